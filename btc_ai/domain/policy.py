"""The policy: an MLP over one flat parameter vector, run for a whole population in batched matmuls."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise

import numpy as np
import torch
from torch import nn

from btc_ai.domain.shapes import N_ACTIONS, param_count

_ACTIVATION_BUDGET_BYTES = 16 << 20  # larger chunks page-fault: glibc hands big buffers back to the OS


@dataclass(frozen=True)
class PolicySpec:
    """Shape of the MLP: inputs -> hidden x layers (hardtanh) -> 3 action logits.

    Hardtanh (clamp to [-1, 1]) rather than tanh: as bounded, and about 40x cheaper per element,
    which at hidden 64 was half of the evaluation time.
    """

    n_inputs: int
    hidden_size: int
    hidden_layers: int = 2

    @cached_property
    def layer_shapes(self) -> tuple[tuple[int, int], ...]:
        sizes = [self.n_inputs] + [self.hidden_size] * self.hidden_layers + [N_ACTIONS]
        return tuple(pairwise(sizes))

    @cached_property
    def n_params(self) -> int:
        return param_count(self.n_inputs, self.hidden_size, self.hidden_layers)

    def flops_per_decision(self) -> int:
        """Multiply-adds x 2 of one forward pass for one member and one bar."""
        return sum(2 * i * o for i, o in self.layer_shapes)

    def init_params(self, seed: int) -> np.ndarray:
        """Scaled-normal weights (1/sqrt(fan_in)), zero biases; deterministic for ``seed``."""
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 0x9011C7])))
        parts = []
        for k, (fan_in, fan_out) in enumerate(self.layer_shapes):
            scale = 1.0 / np.sqrt(fan_in)
            if k == len(self.layer_shapes) - 1:
                scale *= 0.1  # near-uniform initial preferences between actions
            parts.append((rng.standard_normal((fan_in, fan_out)) * scale).ravel())
            parts.append(np.zeros(fan_out))
        return np.concatenate(parts).astype(np.float32)

    def unpack(self, flat: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Views (no copies) of a (P, n_params) tensor as per-member weights (P, in, out) and biases (P, 1, out)."""
        layers, offset = [], 0
        members = flat.shape[0]
        for fan_in, fan_out in self.layer_shapes:
            weight = flat[:, offset : offset + fan_in * fan_out].view(members, fan_in, fan_out)
            offset += fan_in * fan_out
            bias = flat[:, offset : offset + fan_out].view(members, 1, fan_out)
            offset += fan_out
            layers.append((weight, bias))
        return layers


@torch.inference_mode()
def batched_actions(spec: PolicySpec, flat: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Action index (0 short, 1 flat, 2 long) of every member for every input row.

    ``flat`` is (P, n_params) float32, ``inputs`` (N, F) float32 shared by all members; returns (P, N)
    int64. Members are processed in chunks so one layer's activations stay cache-sized; each member's
    result does not depend on which chunk it lands in.
    """
    members, rows = flat.shape[0], inputs.shape[0]
    per_member = rows * spec.hidden_size * 4
    chunk = max(1, min(members, _ACTIVATION_BUDGET_BYTES // max(per_member, 1)))
    out = torch.empty((members, rows), dtype=torch.int64)
    for lo in range(0, members, chunk):
        hi = min(members, lo + chunk)
        layers = spec.unpack(flat[lo:hi])
        (w0, b0), rest = layers[0], layers[1:]
        h = torch.baddbmm(b0, inputs.expand(hi - lo, rows, inputs.shape[1]), w0).clamp_(-1.0, 1.0)
        for w, b in rest[:-1]:
            h = torch.baddbmm(b, h, w).clamp_(-1.0, 1.0)
        w, b = rest[-1]
        out[lo:hi] = torch.baddbmm(b, h, w).argmax(dim=-1)
    return out


class PolicyNet(nn.Module):
    """The trained policy as an ordinary torch module: features (N, F) -> action logits (N, 3)."""

    def __init__(self, spec: PolicySpec, feature_names: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.spec = spec
        self.feature_names = tuple(feature_names)
        layers: list[nn.Module] = []
        for k, (fan_in, fan_out) in enumerate(spec.layer_shapes):
            layers.append(nn.Linear(fan_in, fan_out))
            if k < len(spec.layer_shapes) - 1:
                layers.append(nn.Hardtanh())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.inference_mode()
    def act(self, x: torch.Tensor) -> torch.Tensor:
        """Positions (-1 short, 0 flat, +1 long) for feature rows ``x``."""
        return self.net(x).argmax(dim=-1) - 1

    def load_flat(self, flat: np.ndarray) -> PolicyNet:
        """Copy a flat parameter vector (the ES layout) into the module's layers."""
        tensor = torch.from_numpy(np.array(flat, dtype=np.float32))  # a copy: the ES state is read-only
        linears = [m for m in self.net if isinstance(m, nn.Linear)]
        for linear, (weight, bias) in zip(linears, self.spec.unpack(tensor.unsqueeze(0)), strict=True):
            with torch.no_grad():
                linear.weight.copy_(weight[0].T)
                linear.bias.copy_(bias[0, 0])
        return self

    def flat_params(self) -> np.ndarray:
        """The module's weights back in the ES layout."""
        parts = []
        for linear in (m for m in self.net if isinstance(m, nn.Linear)):
            parts.append(linear.weight.detach().T.reshape(-1))
            parts.append(linear.bias.detach().reshape(-1))
        return torch.cat(parts).numpy().astype(np.float32)
