"""What `btc-ai train` and `btc-ai walk-forward` share around a training: the training function (with the
documented fault-injection hooks) and the outage journal's settling at the end."""

from __future__ import annotations

from typing import Any

from btc_ai.domain.errors import UserInputError


def training_func() -> Any:
    """`train_model`, or the fault-injecting wrapper the environment asks for (tests, `btc-ai chaos`)."""
    # the training floor loads torch: imported when a training starts, so `btc-ai --help` stays fast
    from btc_ai.training.faults import training_func_from_environment

    try:
        return training_func_from_environment()
    except ValueError as exc:
        raise UserInputError(str(exc)) from None


def settle_journal(system: Any) -> None:
    """After a training: send what waits in the journal if the store is back, else say where it waits."""
    tracker = system.opened_tracker
    if tracker is None or not tracker.offline:
        return
    tracker.close()
    if tracker.reachable(timeout=5):  # a server busy with others' replays answers slowly, not never
        tracker.replay(wait=True)  # another training sharing the journal may be sending our entries
    left = tracker.pending()
    if left:
        print(f"tracking server unreachable ({tracker.outage or 'no answer'}): {left} writes wait in the journal "
              f"{tracker.journal.folder}; they are sent by the next btc-ai command or `btc-ai sync`", flush=True)
