"""A corpus of bad inputs, each answered through the CLI with one clear line, exit code 2, no traceback,
and nothing created; repairable ones are repaired and recorded instead."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import session_runs, store_uri, tiny_flags, write_binance_csv

HEADER = "timestamp,open,high,low,close,volume\n"


def _rows(n: int, start: int = 0, step_min: int = 5, price: float = 100.0) -> str:
    lines = []
    for k in range(start, start + n):
        minutes = k * step_min
        stamp = f"2021-06-{1 + minutes // 1440:02d} {minutes % 1440 // 60:02d}:{minutes % 60:02d}:00"
        lines.append(f"{stamp},{price},{price + 1},{price - 1},{price + 0.5},10\n")
    return "".join(lines)


def _file(tmp: Path, name: str, content: str | bytes) -> str:
    path = tmp / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


GOOD = _rows(40)

# name -> (builder of argv given the tmp folder, words the one line must contain)
DATA_CASES = {
    "empty file": (lambda t: _file(t, "a.csv", ""), "empty"),
    "header only": (lambda t: _file(t, "a.csv", HEADER), "no data rows"),
    "binary garbage": (lambda t: _file(t, "a.csv", bytes(range(256)) * 8), "a.csv"),
    "wrong delimiter": (lambda t: _file(t, "a.csv", HEADER.replace(",", "|").replace("|", "/") + GOOD.replace(",", "/")),
                        "a.csv"),
    "missing close column": (lambda t: _file(t, "a.csv", "timestamp,open,high,low\n2021-06-01 00:00,1,2,0.5\n"),
                             "close"),
    "no timestamp column": (lambda t: _file(t, "a.csv", "open,high,low,close\n1,2,0.5,1.5\n"), "timestamp"),
    "non-numeric prices": (lambda t: _file(t, "a.csv", HEADER + GOOD + "2021-06-02 00:00:00,abc,2,1,1.5,3\n"),
                           "line"),
    "NaN prices": (lambda t: _file(t, "a.csv", HEADER + GOOD + "2021-06-02 00:00:00,,2,1,1.5,3\n"), "line"),
    "negative prices": (lambda t: _file(t, "a.csv", HEADER + GOOD + "2021-06-02 00:00:00,-5,2,-6,1.5,3\n"), "line"),
    "zero prices": (lambda t: _file(t, "a.csv", HEADER + GOOD + "2021-06-02 00:00:00,0,0,0,0,3\n"), "line"),
    "high below low": (lambda t: _file(t, "a.csv", HEADER + GOOD + "2021-06-02 00:00:00,100,90,110,100,3\n"), "high"),
    "close above high": (lambda t: _file(t, "a.csv", HEADER + GOOD + "2021-06-02 00:00:00,100,101,99,150,3\n"),
                         "line"),
    "mixed intervals": (lambda t: _file(t, "a.csv", HEADER + _rows(30) + _rows(30, start=31, step_min=7)), "interval"),
    "unparseable timestamps": (lambda t: _file(t, "a.csv", HEADER + "yesterday,1,2,0.5,1.5,3\nnoon,1,2,0.5,1.5,3\n"),
                               "timestamp"),
    "fewer rows than one episode": (lambda t: _file(t, "a.csv", HEADER + GOOD), "bars to train on"),
    "missing file": (lambda t: str(t / "nope.csv"), "does not exist"),
    "a folder": (lambda t: str(t), "folder"),
}


def _assert_one_line_exit_2(code: int, err: str, *words: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]


def _nothing_created(folder: Path) -> None:
    assert not (folder / "mlruns").exists()
    assert not (folder / "checkpoints").exists()


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data_file(here, run_main, case) -> None:
    build, word = DATA_CASES[case]
    code, _, err = run_main("train", "--data_path", build(here), "--episodes", "2")
    _assert_one_line_exit_2(code, err, word)
    _nothing_created(here)


def test_the_dashed_data_flag_is_the_same_flag(here, run_main) -> None:
    code, _, err = run_main("train", "--data-path", str(here / "nope.csv"))
    assert code == 2 and "does not exist" in err


CONFIG_CASES = {
    "invalid JSON config": (lambda t: ["--config", _file(t, "c.json", '{"SIGMA": 0.1,')], "not valid JSON"),
    "config not an object": (lambda t: ["--config", _file(t, "c.json", "[1, 2]")], "JSON object"),
    "missing config file": (lambda t: ["--config", str(t / "none.json")], "does not exist"),
    "unknown key": (lambda t: ["--set", "LEARNIN_RATE=0.1"], "did you mean LEARNING_RATE"),
    "wrong type": (lambda t: ["--set", "HIDDEN_SIZE=wide"], "HIDDEN_SIZE"),
    "wrong type in a flag": (lambda t: ["--hidden-size", "wide"], "--hidden_size"),
    "unknown bucket": (lambda t: ["--bucket", "HODL"], "Scalping, Intraday, Swing, Position"),
    "unknown timeframe": (lambda t: ["--set", "TIMEFRAME=7min"], "TIMEFRAME"),
    "--set without =": (lambda t: ["--set", "SIGMA"], "KEY=VALUE"),
    "resume with config flags": (lambda t: ["--resume", "abc", "--bucket", "Swing"], "drop --bucket"),
    "contradicting checkpoint flags": (lambda t: ["--enable_emergency_checkpoints", "--no-emergency-checkpoints"],
                                       "contradict"),
    "negative retries": (lambda t: ["--max_retries", "-1"], "max_retries"),
    "unknown flag": (lambda t: ["--learning_rat", "0.1"], "--learning_rat"),
    "malformed fault hook": (lambda t: ["--episodes", "2"], "BTC_AI_FAULT"),
    "unreachable tracking server": (lambda t: ["--tracking-uri", "http://127.0.0.1:9"], "cannot reach"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config_or_flags(here, run_main, monkeypatch, case) -> None:
    build, word = CONFIG_CASES[case]
    if case == "malformed fault hook":
        monkeypatch.setenv("BTC_AI_FAULT", "ValueError-3")
    code, _, err = run_main("train", *build(here))  # argparse's own errors come back as their exit code
    _assert_one_line_exit_2(code, err, word)
    _nothing_created(here)


def test_every_config_problem_is_named_at_once_in_one_line(here, run_main) -> None:
    code, _, err = run_main("train", "--set", "HIDDEN_SIZE=wide", "--set", "ES_POPULATON=8", "--bucket", "HODL")
    assert code == 2
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.strip()]
    assert len(errors) == 1
    assert "HIDDEN_SIZE='wide'" in errors[0] and "did you mean ES_POPULATION?" in errors[0]
    assert "BUCKET='HODL'" in errors[0]
    _nothing_created(here)


@pytest.mark.parametrize(("ref", "word"), [
    ("0123456789abcdef0123456789abcdef", "does not exist"),
    ("models:/btc-ai-scalping/1", "no such registered model version"),
    ("models:/btc-ai-scalping", "models:/<name>/<version>"),
])
def test_bad_resume_reference(here, run_main, ref, word) -> None:
    code, _, err = run_main("resume", ref)
    _assert_one_line_exit_2(code, err, word)
    assert not (here / "checkpoints").exists()


@pytest.mark.slow
def test_repairable_inputs_are_repaired_and_recorded(here, run_main, candles) -> None:
    path = write_binance_csv(here / "c.csv", candles.iloc[:3000])
    lines = path.read_text().splitlines(keepends=True)
    shuffled = lines[:1500] + lines[1500:1510][::-1] + lines[1510:] + lines[100:103]  # unsorted + duplicates
    path.write_text("".join(shuffled) + lines[-1][:20])  # and a last row cut off mid-row
    code, out, err = run_main("train", "--data_path", str(path), *tiny_flags(ES_POPULATION=7), "--learning_rate", "5")
    assert code == 0, err
    assert "repairs: dropped 3 duplicate timestamps (kept the first); sorted rows by time; dropped 1 cut-off last row" in out
    assert "make_population_even: ES_POPULATION 7 -> 8" in out
    assert "clamp_out_of_range_values: LEARNING_RATE 5.0 -> 1.0" in out
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store_uri(here))
    runs = client.search_runs([client.get_experiment_by_name("btc-ai").experiment_id],
                              "tags.`btc_ai.kind` = 'repair'")
    assert {r.data.tags["btc_ai.repair_rule"] for r in runs} == {"make_population_even", "clamp_out_of_range_values"}
    session = session_runs(store_uri(here))[0]
    report = json.loads(Path(client.download_artifacts(session.info.run_id, "data_report.json", str(here))).read_text())
    assert report["report"]["duplicates_dropped"] == 3 and report["report"]["was_unsorted"] is True
    assert report["report"]["truncated_rows_dropped"] == 1
