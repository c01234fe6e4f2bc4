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
    "bad --ray-address": (lambda t: ["--ray-address", "local:two"], "local:N"),
    "--ray-address with the local evaluator": (lambda t: ["--ray-address", "auto", "--evaluator", "local"],
                                               "drop one"),
    "unknown evaluator": (lambda t: ["--evaluator", "spark"], "--evaluator"),
    "--evaluator ray without Ray installed": (lambda t: ["--evaluator", "ray"], "pip install -e '.[cluster]'"),
    "no Ray cluster at the address": (lambda t: ["--ray-address", "ray://127.0.0.1:9"], "no ray cluster"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config_or_flags(here, run_main, monkeypatch, case) -> None:
    build, word = CONFIG_CASES[case]
    if case == "malformed fault hook":
        monkeypatch.setenv("BTC_AI_FAULT", "ValueError-3")
    if case == "--evaluator ray without Ray installed":
        monkeypatch.setattr("btc_ai.training.cluster.address.ray_installed", lambda: False)
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
    ("models:/btc-ai-scalping/1", "model version btc-ai-scalping/1 does not exist"),
    ("models:/btc-ai-scalping", "models:/<name>/<version>"),
])
def test_bad_resume_reference(here, run_main, ref, word) -> None:
    from btc_ai.tracking.tracker import Tracker

    Tracker(store_uri(here))  # a store to look in (without one, the refusal is "no tracking store": test_stores)
    code, _, err = run_main("resume", ref)
    _assert_one_line_exit_2(code, err, word)
    assert not (here / "checkpoints").exists()


# -- data, config and flags: the wider corpus ------------------------------------------------------
# Each case: (argv given the scratch folder, words the one line must contain). The folder's files after the
# builder ran are all that may be there after the command: nothing created, no store, nothing RUNNING.


def _dated(n: int, stamp: str, start: str = "2021-06-08", step_min: int = 5, sep: str = ";", dec: str = ",") -> str:
    """A regional export: ``stamp`` (strftime) dates, ``sep`` between fields, ``dec`` as the decimal mark."""
    import pandas as pd

    out = [sep.join(["Date", "Open", "High", "Low", "Close", "Volume"]) + "\n"]
    for k, ts in enumerate(pd.date_range(start, periods=n, freq=f"{step_min}min")):
        price = 37000 + k % 7
        fields = [f"{x:.2f}".replace(".", dec) for x in (price, price + 5, price - 5, price + 1, 2.5)]
        out.append(sep.join([ts.strftime(stamp), *fields]) + "\n")
    return "".join(out)


def _fifo(tmp: Path, name: str) -> str:
    import os

    os.mkfifo(tmp / name)
    return str(tmp / name)


def _socket(tmp: Path, name: str) -> str:
    import socket

    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp / name))  # leaves the socket file behind when closed
    sock.close()
    return str(tmp / name)


def _zip(tmp: Path, name: str, members: dict[str, str]) -> str:
    import zipfile

    with zipfile.ZipFile(tmp / name, "w") as archive:
        for member, text in members.items():
            archive.writestr(member, text)
    return str(tmp / name)


def _through_a_file(tmp: Path) -> str:
    _file(tmp, "a.csv", HEADER + GOOD)
    return str(tmp / "a.csv" / "b.csv")


def _train_data(build, *more: str):
    return lambda t: ["train", "--data_path", build(t), "--episodes", "2", *more]


def _train_config(text: str | bytes, *more: str):
    return lambda t: ["train", "--config", _file(t, "c.json", text), "--episodes", "2", *more]


def _train(*argv: str):
    return lambda t: ["train", *argv]


INPUT_CASES = {
    # data: dates that read two ways, and what states the way
    "day-first dates nothing in the file decides": (
        _train_data(lambda t: _file(t, "eu.csv", _dated(288, "%d.%m.%Y %H:%M"))),
        ("day-first or month-first", "--date-format day-first")),
    "a stated date order the file contradicts": (
        _train_data(lambda t: _file(t, "eu.csv", _dated(2016, "%d.%m.%Y %H:%M")), "--date-format", "month-first"),
        ("not month-first", "--date-format day-first")),
    "dates in both orders in one file": (
        _train_data(lambda t: _file(t, "mix.csv", _dated(30, "%d.%m.%Y", start="2021-06-01", step_min=1440)
                                    .replace("20.06.2021", "06.20.2021"))),
        ("both orders", "one date format per file")),
    "an unknown --date-format": (
        _train_data(lambda t: _file(t, "a.csv", HEADER + GOOD), "--date-format", "sideways"),
        ("'sideways'", "day-first, month-first, iso")),
    "--date-format without --data_path": (_train("--date-format", "day-first"), ("--date-format", "without --data_path")),
    "resume with an unknown --date-format": (
        lambda t: ["resume", "0123456789abcdef0123456789abcdef", "--date-format", "dd-mm"], ("'dd-mm'", "day-first")),
    # data: files that are not files
    "a named pipe as data (no writer: must not hang)": (_train_data(lambda t: _fifo(t, "p.csv")),
                                                        ("named pipe", "regular file")),
    "a socket as data": (_train_data(lambda t: _socket(t, "s.csv")), ("socket", "regular file")),
    "a device as data": (_train_data(lambda t: "/dev/null"), ("character device", "regular file")),
    "an empty --data_path": (_train("--data_path", "", "--episodes", "2"), ("--data_path is empty",)),
    "a data path through a file": (_train_data(_through_a_file), ("a part of the path is a file",)),
    # data: containers and encodings
    "a damaged gzip": (_train_data(lambda t: _file(t, "k.csv.gz", b"\x1f\x8b\x08\x00broken")),
                       ("damaged gzip", "download it again")),
    "a zip of two CSVs": (_train_data(lambda t: _zip(t, "two.zip", {"a.csv": HEADER + GOOD, "b.csv": HEADER + GOOD})),
                          ("2 CSV/Parquet files", "extract the one")),
    "an Excel workbook": (_train_data(lambda t: _zip(t, "book.xlsx", {"xl/workbook.xml": "<workbook/>"})),
                          ("Excel workbook", "saved as CSV")),
    "a damaged Parquet file": (_train_data(lambda t: _file(t, "c.parquet", b"PAR1" + b"\x00junk" * 20)),
                               ("Parquet", "re-export")),
    "UTF-16 data without a byte-order mark": (_train_data(lambda t: _file(t, "u.csv", (HEADER + GOOD).encode("utf-16-le"))),
                                              ("not a text file", "UTF-8")),
    "a single candle": (_train_data(lambda t: _file(t, "one.csv", HEADER + _rows(1))), ("only 1 candle row", "more")),
    "a day of bars: nothing left to validate on": (_train_data(lambda t: _file(t, "day.csv", HEADER + _rows(288))),
                                                   ("0 bars to validate on", "give more candles")),
    "rows without any prices": (_train_data(lambda t: _file(t, "e.csv", HEADER + "2021-06-01 00:00,,,,,\n" * 5)),
                                ("no rows with prices",)),
    # config files: how they are read
    "a UTF-16 config (read, then its mistake named)": (_train_config('{"EPOCHS": 5}'.encode("utf-16")),
                                                       ("EPOCHS", "did you mean GENERATIONS")),
    "a config with a UTF-8 BOM (read like a data file)": (_train_config(b'\xef\xbb\xbf{"LEARNIN_RATE": 0.1}'),
                                                          ("did you mean LEARNING_RATE",)),
    "a config in another encoding": (_train_config(b'{"BUCKET": "Scalping\xe9"}'), ("not UTF-8", "save it as UTF-8")),
    "a config that is empty": (_train_config(b""), ("is empty", "JSON object")),
    "--config naming a folder": (lambda t: ["train", "--config", str(t)], ("is a folder", "config file")),
    "--config naming a named pipe": (lambda t: ["train", "--config", _fifo(t, "c.json")], ("named pipe", "config file")),
    "an empty --config": (_train("--config", ""), ("--config is empty",)),
    # config files: what they say
    "a key given twice (any case)": (_train_config('{"SIGMA": 0.1, "sigma": 0.2}'), ("SIGMA", "2 times", "keep one")),
    "a flag written as a config key": (_train_config('{"data_path": "btc.csv"}'), ("data_path", "pass --data_path")),
    "EPOCHS for GENERATIONS": (_train_config('{"EPOCHS": 50}'), ("EPOCHS", "did you mean GENERATIONS")),
    "NaN in a config": (_train_config('{"SIGMA": NaN}'), ("SIGMA", "not a number")),
    "Infinity in a config": (_train_config('{"LEARNING_RATE": Infinity}'), ("LEARNING_RATE", "infinite")),
    "true where a number goes": (_train_config('{"HIDDEN_SIZE": true}'), ("HIDDEN_SIZE", "true/false")),
    "null where a number goes": (_train_config('{"SIGMA": null}'), ("SIGMA", "number")),
    "an empty key in a config": (_train_config('{"": 5}'), ("key is empty", "KEY=VALUE")),
    "a percentage for a fraction": (_train_config('{"VALIDATION_FRACTION": 20}'),
                                    ("VALIDATION_FRACTION=20", "above the allowed range", "0.2")),
    "a noise table too small for the net": (_train_config('{"HIDDEN_SIZE": 3000, "NOISE_TABLE_SIZE": 65536}'),
                                            ("NOISE_TABLE_SIZE=65536", "HIDDEN_SIZE=3000", "at least 16777216")),
    # flags
    "--set =5 (the empty key is blamed)": (_train("--set", "=5"), ("key before '=' is empty", "KEY=VALUE")),
    "--set with no value": (_train("--set", "SIGMA="), ("SIGMA has no value",)),
    "--set EPOCHS": (_train("--set", "EPOCHS=5"), ("did you mean GENERATIONS",)),
    "--set LR": (_train("--set", "LR=0.1"), ("did you mean LEARNING_RATE",)),
    "--set a flag": (_train("--set", "DATA_PATH=btc.csv"), ("pass --data_path",)),
    "--learning_rate nan": (_train("--learning_rate", "nan"), ("LEARNING_RATE", "not a number")),
    "--sigma inf": (_train("--sigma", "inf"), ("SIGMA", "infinite")),
    "--set HIDDEN_SIZE=true": (_train("--set", "HIDDEN_SIZE=true"), ("HIDDEN_SIZE", "true/false")),
    "--learning_rate 5 (refused, not clamped to 1.0)": (_train("--learning_rate", "5"),
                                                        ("LEARNING_RATE=5.0", "above the allowed range", "0.01")),
    "--sigma 0": (_train("--sigma", "0"), ("SIGMA=0.0", "below the allowed range", "0.02")),
    "--hidden_size past a noise table set by --set": (_train("--hidden_size", "3000", "--set", "NOISE_TABLE_SIZE=65536"),
                                                      ("NOISE_TABLE_SIZE", "HIDDEN_SIZE=3000")),
    "--experiment ''": (_train("--experiment", "", "--episodes", "2"), ("--experiment is empty",)),
    "--experiment of blanks": (_train("--experiment", "   ", "--episodes", "2"), ("--experiment is empty",)),
    "--checkpoint_dir naming a file": (lambda t: ["train", "--checkpoint_dir", _file(t, "ckfile.txt", "x"), "--episodes", "2"],
                                       ("is a file, not a folder",)),
    "an empty --checkpoint_dir": (_train("--checkpoint_dir", "", "--episodes", "2"), ("--checkpoint_dir is empty",)),
    "--episodes 1.5": (_train("--episodes", "1.5"), ("--episodes", "invalid int")),
    "a quoted ~ in --data_path": (_train("--data_path", "~/no-such-btc.csv"), ("does not exist", "not expanded")),
    "a quoted ~ in --config": (_train("--config", "~/no-such-config.json"), ("does not exist", "not expanded")),
}


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize("case", list(INPUT_CASES))
def test_bad_data_config_or_flag(here, run_main, case) -> None:
    build, words = INPUT_CASES[case]
    argv = build(here)
    before = _snapshot(here)
    code, _, err = run_main(*argv)
    _assert_one_line_exit_2(code, err, *words)
    for arg in argv:  # a file named in the line is named once ("bad.csv: bad.csv: ..." was a bug)
        if arg.startswith(str(here)) and Path(arg).name:
            assert err.count(Path(arg).name) <= 1, err
    assert _snapshot(here) == before  # nothing created: no store, no checkpoints, nothing else


def test_the_empty_key_is_blamed_not_its_value(here, run_main) -> None:
    code, _, err = run_main("train", "--set", "=5")
    assert code == 2 and "unknown key" not in err and "'=5'" in err


def test_data_and_config_take_the_same_encodings(here, run_main) -> None:
    """A BOM or UTF-16 is read in a config as in a data file: both parse and go on to the next check."""
    for encoded in (b"\xef\xbb\xbf" + b'{"SIGMA": 0.05, "EPOCHS": 3}', '{"SIGMA": 0.05, "EPOCHS": 3}'.encode("utf-16")):
        code, _, err = run_main("train", "--config", _file(here, "c.json", encoded))
        assert code == 2 and "did you mean GENERATIONS" in err and "JSON" not in err, err
    for encoded in (b"\xef\xbb\xbf" + (HEADER + GOOD).encode(), (HEADER + GOOD).encode("utf-16")):
        code, _, err = run_main("train", "--data_path", _file(here, "d.csv", encoded), "--episodes", "2")
        assert code == 2 and "bars to train on" in err, err  # read, then too short: the next check


PERMISSION_SCRIPT = """
import json, sys
from btc_ai.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    results.append(code)
print(json.dumps(results))
"""


@pytest.mark.slow  # a `btc-ai` process, as another user
def test_unreadable_files_as_an_unprivileged_user(tmp_path) -> None:
    """Permission denied for real: as `nobody` (root ignores file modes): an unreadable data file, config file,
    and a data file in a folder that may not be entered."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    if os.geteuid() != 0 and shutil.which("setpriv") is None:
        pytest.skip("not root, so no other user to run as; permissions as this user are the same code path")
    if shutil.which("setpriv") is None:
        pytest.skip("root ignores file modes and setpriv (to run as nobody) is not installed")
    work = Path(tempfile.mkdtemp(prefix="btc-ai-perm-"))  # pytest's tmp_path is private to root
    try:
        work.chmod(0o777)
        data, config = Path(_file(work, "secret.csv", HEADER + GOOD)), Path(_file(work, "secret.json", '{"SIGMA": 0.1}'))
        locked = work / "locked"
        locked.mkdir()
        inside = Path(_file(locked, "in.csv", HEADER + GOOD))
        for path in (data, config, locked):
            path.chmod(0)
        cases = [["train", "--data_path", str(data), "--episodes", "2"], ["train", "--config", str(config)],
                 ["train", "--data_path", str(inside), "--episodes", "2"]]
        before = _snapshot(work)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env.update(HOME=str(work), PYTHONDONTWRITEBYTECODE="1", MLFLOW_TRACKING_URI=store_uri(work))
        proc = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c",
                               PERMISSION_SCRIPT, json.dumps(cases)], capture_output=True, text=True, timeout=300,
                              env=env, cwd=work)
        assert "Traceback" not in proc.stderr, proc.stderr
        assert json.loads(proc.stdout.strip().splitlines()[-1]) == [2, 2, 2], proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.startswith("btc-ai: error:")]
        assert len(lines) == 3 and len(proc.stderr.strip().splitlines()) == 3, proc.stderr
        for line, path in zip(lines, (data, config, inside), strict=True):
            assert "permission denied" in line and str(path) in line and "chmod" in line, line
        assert _snapshot(work) == before
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.slow
def test_repairable_inputs_are_repaired_and_recorded(here, run_main, candles) -> None:
    path = write_binance_csv(here / "c.csv", candles.iloc[:3000])
    lines = path.read_text().splitlines(keepends=True)
    shuffled = lines[:1500] + lines[1500:1510][::-1] + lines[1510:] + lines[100:103]  # unsorted + duplicates
    path.write_text("".join(shuffled) + lines[-1][:20])  # and a last row cut off mid-row
    code, out, err = run_main("train", "--data_path", str(path), *tiny_flags(ES_POPULATION=7, EVAL_INTERVAL=0))
    assert code == 0, err
    assert "repairs: dropped 3 duplicate timestamps (kept the first); sorted rows by time; dropped 1 cut-off last row" in out
    assert "make_population_even: ES_POPULATION 7 -> 8" in out
    assert "clamp_out_of_range_values: EVAL_INTERVAL 0 -> 1" in out
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store_uri(here))
    runs = client.search_runs([client.get_experiment_by_name("btc-ai").experiment_id],
                              "tags.`btc_ai.kind` = 'repair'")
    assert {r.data.tags["btc_ai.repair_rule"] for r in runs} == {"make_population_even", "clamp_out_of_range_values"}
    session = session_runs(store_uri(here))[0]
    report = json.loads(Path(client.download_artifacts(session.info.run_id, "data_report.json", str(here))).read_text())
    assert report["report"]["duplicates_dropped"] == 3 and report["report"]["was_unsorted"] is True
    assert report["report"]["truncated_rows_dropped"] == 1


@pytest.mark.slow
def test_dates_the_file_cannot_tell_are_stated_once_and_again_on_resume(here, run_main) -> None:
    """A day of day-first bars (08.06.2021): refused until --date-format says day-first; the session trains on 8
    June (not 6 August); its resume reads the file the same way only when told again, else refuses."""
    path = _file(here, "eu_day.csv", _dated(288, "%d.%m.%Y %H:%M"))
    flags = [*tiny_flags(EPISODES=4), "--set", "LOOKBACK=2", "--set", "TEST_FRACTION=0.05"]
    code, _, err = run_main("train", "--data_path", path, *flags)
    _assert_one_line_exit_2(code, err, "may be day-first or month-first", "--date-format day-first")
    assert not (here / "mlruns").exists()
    code, out, err = run_main("train", "--data_path", path, "--date-format", "day-first", *flags)
    assert code == 0, err
    assert "2021-06-08 00:00 to 2021-06-08 23:55 UTC" in out and "dates read day-first (as stated)" in out
    session = session_runs(store_uri(here))[0].info.run_id
    code, _, err = run_main("resume", session, "--episodes", "6")
    _assert_one_line_exit_2(code, err, "--date-format day-first")
    code, out, err = run_main("resume", session, "--episodes", "6", "--date-format", "dd.mm.yyyy")
    assert code == 0, err
    from mlflow import MlflowClient

    runs = MlflowClient(tracking_uri=store_uri(here)).search_runs([session_runs(store_uri(here))[0].info.experiment_id])
    assert all(r.info.status != "RUNNING" for r in runs)
