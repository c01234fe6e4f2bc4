"""`btc-ai chaos`: the table of scenarios (each error type of the classification table, the signals, the
checkpoint and tracking-server failures of `btc_ai.desk.chaos`, the team deployment's of
`btc_ai.desk.chaos_team`) and the run that judges each against what the recovery system promises."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from pathlib import Path

from btc_ai.desk.chaos import (
    Outcome,
    Scratch,
    in_process_scenario,
    scenario_corrupted_checkpoint,
    scenario_sigkill_mid_commit,
    scenario_sigkill_resume,
    scenario_sigterm,
    scenario_tracking_server_down,
    scenario_tracking_server_lost,
)
from btc_ai.desk.chaos_team import team_scenarios
from btc_ai.domain.errors import UserInputError
from btc_ai.recovery.classify import RECOVERABLE, UNRECOVERABLE


def scenarios() -> dict[str, Callable[[Scratch], Outcome]]:
    table: dict[str, Callable[[Scratch], Outcome]] = {}
    for cls in RECOVERABLE:
        table[cls.__name__] = in_process_scenario(cls.__name__, f"{cls.__name__}@3", True)
    for cls in UNRECOVERABLE:
        if cls is not KeyboardInterrupt:  # the signal scenarios below cover interrupts
            table[cls.__name__] = in_process_scenario(cls.__name__, f"{cls.__name__}@3", False)
    table["NaN"] = in_process_scenario("NaN", "NaN@3", True)
    table["stall"] = in_process_scenario("stall", "Stall@3", True)
    table["sigterm"] = scenario_sigterm
    table["sigkill+resume"] = scenario_sigkill_resume
    table["sigkill-mid-commit"] = scenario_sigkill_mid_commit
    table["corrupted-checkpoint"] = scenario_corrupted_checkpoint
    table["tracking-server-down"] = scenario_tracking_server_down
    table["tracking-server-lost"] = scenario_tracking_server_lost
    table.update(team_scenarios())  # the same outages on the team deployment
    return table


def run_chaos(names: list[str] | None = None, out: Callable[[str], None] = print) -> int:
    """Run the scenarios (all, or ``names``); print the table; 0 only if every one behaved as expected."""
    table = scenarios()
    unknown = [n for n in names or [] if n not in table]
    if unknown:
        raise UserInputError(f"unknown scenario {', '.join(unknown)}; known: {', '.join(table)}")
    chosen = names or list(table)
    results = []
    out(f"{'scenario':<26} {'classification':<26} {'attempts':>8} {'repairs':<38} {'outcome':<22} {'time':>7}  result")
    with tempfile.TemporaryDirectory(prefix="btc-ai-chaos-") as tmp, contextlib.ExitStack() as stack:
        shared = Scratch(Path(tmp) / "in-process", stack)  # the in-process scenarios: one store, an experiment each
        shared.root.mkdir()
        for name in chosen:
            scratch = shared if getattr(table[name], "shares_store", False) else shared.sibling(name.replace("+", "_"))
            try:
                result = table[name](scratch)
            except Exception as exc:  # a scenario that crashes is a failed scenario, not a crashed command
                result = Outcome(name, "?", 0, "-", f"crashed: {type(exc).__name__}", 0.0, False, str(exc)[:200])
            results.append(result)
            verdict = "SKIP" if result.skipped else "PASS" if result.passed else "FAIL"
            out(f"{result.scenario:<26} {result.classification:<26} {result.attempts:>8} {result.repairs:<38} "
                f"{result.outcome:<22} {result.seconds:>6.1f}s  {verdict}"
                + (f"  ({result.detail})" if result.detail else ""))
    skipped = [r.scenario for r in results if r.skipped]
    failed = [r.scenario for r in results if not r.passed and not r.skipped]
    out(f"{len(results) - len(failed) - len(skipped)} passed, {len(failed)} failed"
        + (f", {len(skipped)} skipped" if skipped else ""))
    return 0 if not failed else 1
