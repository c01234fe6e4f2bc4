"""A trained policy as files a torch user can load without btc_ai's trainer: ``policy.safetensors`` (the
weights: tensors only, never a pickle) and ``policy.json`` (what it takes: the network shape, the feature
spec and look-back, the bucket and timeframe, the cost model), rebuilt into the same `PolicyNet`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from btc_ai.domain.config import TrainingConfig
from btc_ai.domain.features import feature_names, warmup_bars
from btc_ai.domain.policy import PolicyNet, PolicySpec

WEIGHTS, CARD = "policy.safetensors", "policy.json"
FORMAT = "btc_ai-policy/1"


@dataclass(frozen=True)
class PolicyCard:
    """Everything needed to turn candles into this policy's positions, and to trade them as it was judged."""

    n_inputs: int
    hidden_size: int
    hidden_layers: int
    feature_names: tuple[str, ...]
    lookback: int
    warmup_bars: int
    bucket: str
    timeframe: str
    fee_bps: float
    slippage_bps: float
    holding_cost_bps: float
    max_gap_bars: int
    params_sha256: str = ""
    features: str = "base"
    position_mode: str = "long_short"
    decision_interval: int = 1
    extra: dict[str, Any] = field(default_factory=dict)  # where it came from: session, generation, ...
    format: str = FORMAT

    @classmethod
    def of(cls, config: TrainingConfig, params_sha256: str = "", **extra: Any) -> PolicyCard:
        names = feature_names(config.LOOKBACK, config.FEATURES)
        return cls(len(names), config.HIDDEN_SIZE, config.HIDDEN_LAYERS, names, config.LOOKBACK,
                   warmup_bars(config.LOOKBACK, config.FEATURES), config.BUCKET, config.TIMEFRAME, config.FEE_BPS,
                   config.SLIPPAGE_BPS, config.HOLDING_COST_BPS, config.MAX_GAP_BARS, params_sha256, config.FEATURES,
                   config.POSITION_MODE, config.DECISION_INTERVAL, dict(extra))

    @property
    def spec(self) -> PolicySpec:
        return PolicySpec(self.n_inputs, self.hidden_size, self.hidden_layers)

    @property
    def cost_rate(self) -> float:
        return (self.fee_bps + self.slippage_bps) * 1e-4

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)

    @classmethod
    def from_json(cls, text: str) -> PolicyCard:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"not a btc_ai policy card (format {data.get('format')!r}, expected {FORMAT})")
        data["feature_names"] = tuple(data["feature_names"])
        return cls(**data)


def save_policy(net: PolicyNet, card: PolicyCard, folder: str | Path) -> Path:
    """Write ``policy.safetensors`` and ``policy.json`` into ``folder`` (created); returns the folder."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(folder / WEIGHTS),
              metadata={"format": FORMAT, "params_sha256": card.params_sha256})
    (folder / CARD).write_text(card.to_json(), encoding="utf-8")
    return folder


def load_policy(folder: str | Path) -> tuple[PolicyNet, PolicyCard]:
    """The `PolicyNet` (a plain ``torch.nn.Module``) and its card from a folder :func:`save_policy` wrote —
    e.g. the ``policy/`` folder inside a registered model's artifacts."""
    from safetensors.torch import load_file

    folder = Path(folder)
    card = PolicyCard.from_json((folder / CARD).read_text(encoding="utf-8"))
    net = PolicyNet(card.spec, card.feature_names)
    net.load_state_dict(load_file(str(folder / WEIGHTS)))
    net.eval()
    return net, card
