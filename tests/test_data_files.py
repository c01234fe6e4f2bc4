"""Many files as one series (a folder, a glob, several paths) on every reader of data, and the quality report
(disagreeing duplicates, outlier bars, zero-volume stretches, outages)."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import store_uri, tiny_flags, write_binance_csv

from btc_ai.domain.data import load_candles
from btc_ai.domain.data.quality import OUTLIER_VARIABLE
from btc_ai.domain.data.sources import file_set_change
from btc_ai.domain.errors import DataValidationError

_HEADER = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore"


@pytest.fixture(autouse=True)
def _default_outlier_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(OUTLIER_VARIABLE, "repair")  # --outlier-bars sets it in-process: undone after each test


def binance_zip(folder: Path, name: str, df: pd.DataFrame, *, header: bool = False, micros: bool = False) -> Path:
    """A Binance monthly dump: ``name``.zip holding ``name``.csv, raw 12 columns; newer dumps (2025) have a
    header row and microsecond timestamps."""
    csv = write_binance_csv(folder / f"{name}.csv", df)
    lines = csv.read_text().splitlines()
    if micros:
        lines = [",".join([str(int(f[0]) * 1000), *f[1:6], str(int(f[6]) * 1000), *f[7:]])
                 for f in (line.split(",") for line in lines)]
    text = "\n".join(([_HEADER] if header else []) + lines) + "\n"
    csv.unlink()
    path = folder / f"{name}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{name}.csv", text)
    return path


def three_months(folder: Path, candles: pd.DataFrame) -> list[Path]:
    """Three consecutive 'months' of zips, the newest in the 2025 layout, with the fetcher's litter beside them."""
    folder.mkdir(exist_ok=True)
    parts = np.array_split(np.arange(len(candles)), 3)
    paths = [binance_zip(folder, f"BTCUSDT-5m-2024-0{k + 1}", candles.iloc[rows], header=k == 2, micros=k == 2)
             for k, rows in enumerate(parts)]
    for path in paths:
        Path(f"{path}.CHECKSUM").write_text(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n")
    (folder / "BTCUSDT-5m-2024-04.zip.part").write_bytes(b"PK\x03\x04 half a download")
    return paths


def assert_same(df: pd.DataFrame, want: pd.DataFrame) -> None:
    assert df.index.equals(want.index)
    np.testing.assert_allclose(df[["open", "high", "low", "close", "volume"]].to_numpy(),
                               want[["open", "high", "low", "close", "volume"]].to_numpy(), rtol=1e-12)


# -- folder, glob, list --------------------------------------------------------------------------------------


def test_a_folder_a_glob_and_a_list_read_the_same_series_with_every_file_named(tmp_path, candles) -> None:
    paths = three_months(tmp_path / "data", candles)
    for source in (tmp_path / "data", str(tmp_path / "data" / "BTCUSDT-5m-*"), [str(p) for p in reversed(paths)]):
        df, report = load_candles(source)
        assert_same(df, candles)
        assert [Path(f.path).name for f in report.files] == [p.name for p in paths]  # .CHECKSUM, .part passed over
        assert [f.sha256 for f in report.files] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
        assert report.gaps == 0 and report.duplicates_dropped == 0
        assert "(3 files)" in report.summary()
        assert report.to_dict()["files"][2]["rows"] == len(candles) - 2 * (len(candles) // 3)


def test_one_file_reads_as_it_always_did_and_is_named_with_its_sha256(tmp_path, candles) -> None:
    path = write_binance_csv(tmp_path / "c.csv", candles)
    df, report = load_candles(path)
    assert_same(df, candles)
    assert report.source == str(path) and len(report.files) == 1
    assert report.files[0].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert_same(load_candles([str(path)])[0], candles)  # a list of one is that file


def test_overlapping_files_keep_the_earlier_files_bar_and_count_the_disagreeing_ones(tmp_path, candles) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    binance_zip(folder, "BTCUSDT-5m-2024-01", candles.iloc[:3000])
    later = candles.iloc[2990:].copy()
    later.iloc[:4, later.columns.get_loc("close")] = later["low"].iloc[:4]  # 4 of the 10 shared bars: another close
    binance_zip(folder, "BTCUSDT-5m-2024-02", later)
    df, report = load_candles(folder)
    assert_same(df, candles)  # the earlier file's bars
    assert (report.duplicates_dropped, report.duplicates_disagreeing) == (10, 4)
    assert "10 duplicate timestamps (kept the first, 4 of them with other prices)" in report.summary()


def test_a_gap_between_files_is_counted_like_a_gap_inside_one(tmp_path, candles) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    binance_zip(folder, "BTCUSDT-5m-2024-01", candles.iloc[:2000])
    binance_zip(folder, "BTCUSDT-5m-2024-02", candles.iloc[2006:])
    assert load_candles(folder)[1].gaps == 6


@pytest.mark.parametrize(("names", "says"), [
    (("BTCUSDT-5m-2024-01", "ETHUSDT-5m-2024-02"), "one data source is one symbol"),
    (("BTCUSDT-5m-2024-01", "BTCUSDT-1h-2024-02"), "named 1h but its bars are 5min apart"),
])
def test_mixing_symbols_or_intervals_is_refused_in_one_line(tmp_path, candles, names, says) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    for name, rows in zip(names, (slice(0, 3000), slice(3000, None)), strict=True):
        binance_zip(folder, name, candles.iloc[rows])
    with pytest.raises(DataValidationError, match=says) as info:
        load_candles(folder)
    assert "\n" not in str(info.value)


def test_files_of_two_intervals_are_refused_by_their_bars(tmp_path, candles) -> None:
    hourly = candles.iloc[3000:].resample("1h").agg({"open": "first", "high": "max", "low": "min", "close": "last",
                                                     "volume": "sum"})
    write_binance_csv(tmp_path / "a.csv", candles.iloc[:3000])
    write_binance_csv(tmp_path / "b.csv", hourly)
    with pytest.raises(DataValidationError, match=r"b\.csv holds 1h bars but .*a\.csv holds 5min bars"):
        load_candles([str(tmp_path / "a.csv"), str(tmp_path / "b.csv")])


def test_a_bad_file_in_a_folder_is_named_with_its_line(tmp_path, candles) -> None:
    paths = three_months(tmp_path / "d", candles)
    with zipfile.ZipFile(paths[1]) as archive:
        text = archive.read(archive.namelist()[0]).decode().splitlines()
    fields = text[41].split(",")
    text[41] = ",".join([fields[0], "x", *fields[2:]])  # file line 42: an open that is no number
    with zipfile.ZipFile(paths[1], "w") as archive:
        archive.writestr("BTCUSDT-5m-2024-02.csv", "\n".join(text) + "\n")
    with pytest.raises(DataValidationError) as info:
        load_candles(tmp_path / "d")
    message = str(info.value)
    assert message.startswith(str(paths[1])) and "file line 42" in message and "\n" not in message


@pytest.mark.parametrize("pattern", ["empty", "nothing-*.zip"])
def test_an_empty_folder_or_a_glob_matching_nothing_is_refused(tmp_path, pattern) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.zip.CHECKSUM").write_text("0  x.zip\n")  # litter is not data
    with pytest.raises(DataValidationError, match=r"holds no candle files|matches no candle files"):
        load_candles(str(tmp_path / pattern))


def test_the_file_set_change_names_added_removed_and_changed_files() -> None:
    a, b, c = ({"path": f"/d/{n}.zip", "sha256": n * 64} for n in "abc")
    assert file_set_change([a, b], [dict(a, path="/e/a.zip"), b]) is None  # moved: the same files
    assert file_set_change([a], [dict(a, sha256="z" * 64)]) is None  # one file: judged by its candles
    assert file_set_change([a, b], [a, b, c]) == "added c.zip"
    assert file_set_change([a, b, c], [a, dict(b, sha256="z" * 64)]) == "removed c.zip; changed b.zip"


# -- quality ----------------------------------------------------------------------------------------------


def _spiked(candles: pd.DataFrame) -> pd.DataFrame:
    """The shared hourly file's first bar, at bar 0 and bar 100: an open and high near 4x the closes around."""
    df = candles.copy()
    for i in (0, 100):
        df.iloc[i, df.columns.get_loc("open")] = df["close"].iloc[i] * 3.76
        df.iloc[i, df.columns.get_loc("high")] = df["close"].iloc[i] * 3.76
    return df


def test_outlier_bars_are_repaired_by_default_and_reported_with_their_lines(tmp_path, candles) -> None:
    path = write_binance_csv(tmp_path / "c.csv", _spiked(candles))
    df, report = load_candles(path)
    assert (report.outlier_bars, report.outlier_action) == (2, "repaired")
    assert [o["line"] for o in report.outliers] == [1, 101]
    previous, close = candles["close"].iloc[99], candles["close"].iloc[100]
    assert df["open"].iloc[100] == max(previous, close) == df["high"].iloc[100]
    assert df["open"].iloc[0] == candles["close"].iloc[0]  # the first bar has only its own close
    assert_same(df.iloc[1:100], candles.iloc[1:100])
    assert "clamped 2 outlier bars" in report.summary() and "line 1 and 1 more" in report.summary()
    assert load_candles(path)[0].equals(df)  # deterministic


def test_outlier_bars_are_refused_or_kept_as_asked(tmp_path, candles, monkeypatch) -> None:
    path = write_binance_csv(tmp_path / "c.csv", _spiked(candles))
    with pytest.raises(DataValidationError, match=r"outlier bars\) at file lines 1, 101 .*--outlier-bars repair"):
        load_candles(path, outlier_bars="refuse")
    df, report = load_candles(path, outlier_bars="keep")
    assert report.outlier_action == "kept" and df["open"].iloc[100] == _spiked(candles)["open"].iloc[100]
    assert "2 outlier bars kept" in report.summary()
    monkeypatch.setenv(OUTLIER_VARIABLE, "refuse")
    with pytest.raises(DataValidationError, match="outlier bars"):
        load_candles(path)


def test_a_zero_volume_stretch_and_an_outage_over_a_day_are_reported(tmp_path, candles) -> None:
    df = candles.copy()
    df.iloc[500:530, df.columns.get_loc("volume")] = 0.0  # 30 bars, 2.5 hours
    df.iloc[800:802, df.columns.get_loc("volume")] = 0.0  # 2 bars: not a stretch
    df = df.drop(df.index[2000:2000 + 300])  # 25 hours without bars
    _, report = load_candles(write_binance_csv(tmp_path / "c.csv", df))
    assert report.zero_volume_stretches == 1 and report.zero_volume[0]["bars"] == 30
    assert report.outages == ({"after": candles.index[1999].isoformat(), "resumes": candles.index[2300].isoformat(),
                               "missing": "1 days 01:00:00"},)
    assert "1 zero-volume stretches" in report.summary() and "1 outages over a day" in report.summary()


# -- every command that reads data ---------------------------------------------------------------------------


@pytest.mark.slow
def test_train_resume_and_backtest_read_a_folder_and_resume_notices_a_changed_set(here, run_main, candles) -> None:
    three_months(here / "data", candles)
    code, out, err = run_main("train", "--data_path", "data", "--quiet", *tiny_flags())
    assert code == 0, err
    from conftest import session_runs

    (session,) = session_runs(store_uri(here))
    assert session.data.tags["btc_ai.data_source"] == str(here / "data")
    from mlflow import MlflowClient

    report = MlflowClient(store_uri(here)).download_artifacts(session.info.run_id, "data_report.json", str(here))
    import json

    files = json.loads(Path(report).read_text())["report"]["files"]
    assert [Path(f["path"]).name for f in files] == [f"BTCUSDT-5m-2024-0{k}.zip" for k in (1, 2, 3)]
    # a file whose bars are all already there changes no candle, but the set: refused like a changed fingerprint
    binance_zip(here / "data", "BTCUSDT-5m-2024-00", candles.iloc[:50])
    code, _, err = run_main("resume", session.info.run_id, "--episodes", "8", "--quiet")
    assert code == 2 and "the data files differ: added BTCUSDT-5m-2024-00.zip" in err and "\n" not in err.strip()
    (here / "data" / "BTCUSDT-5m-2024-00.zip").unlink()
    # resume takes one path a flag, repeated, so the flag before REF leaves REF alone
    code, _, err = run_main("resume", "--data_path", "data/BTCUSDT-5m-2024-01.zip", "--data_path",
                            "data/BTCUSDT-5m-2024-02.zip", session.info.run_id, "--episodes", "8", "--quiet")
    assert code == 2 and "removed BTCUSDT-5m-2024-03.zip" in err
    code, _, err = run_main("resume", session.info.run_id, "--episodes", "8", "--quiet")
    assert code == 0, err
    code, out, err = run_main("backtest", "models:/btc-ai-scalping/latest", "data/BTCUSDT-5m-2024-02.zip",
                              "data/BTCUSDT-5m-2024-03.zip", "--json")
    assert code == 0, err
    assert json.loads(out)["bars"] > 0


@pytest.mark.slow
def test_walk_forward_reads_a_glob_and_train_a_repeated_flag(here, run_main, candles) -> None:
    paths = three_months(here / "data", candles)
    code, _, err = run_main("walk-forward", "data/BTCUSDT-5m-*.zip", "--folds", "2", "--quiet", *tiny_flags())
    assert code == 0, err
    from mlflow import MlflowClient

    client = MlflowClient(store_uri(here))
    experiment = client.get_experiment_by_name("btc-ai").experiment_id
    (wf,) = client.search_runs([experiment], "tags.`btc_ai.kind` = 'walk_forward'")
    assert wf.data.tags["btc_ai.data_source"] == str(here / "data" / "BTCUSDT-5m-*.zip")  # a glob stays a glob
    binance_zip(here / "data", "BTCUSDT-5m-2023-12", candles.iloc[:50])  # the glob matches one more file now
    code, _, err = run_main("resume", wf.info.run_id, "--quiet")
    assert code == 2 and "the data files differ: added BTCUSDT-5m-2023-12.zip" in err, err
    code, _, err = run_main("train", "--data_path", str(paths[0]), "--data-path", str(paths[1]), "--quiet",
                            *tiny_flags())
    assert code == 0, err
    code, _, err = run_main("train", "--data_path", "data/nothing-*.zip", "--quiet", *tiny_flags())
    assert code == 2 and "matches no candle files" in err


def test_train_refuses_outlier_bars_when_asked_before_anything_is_created(here, run_main, candles) -> None:
    write_binance_csv(here / "c.csv", _spiked(candles))
    code, _, err = run_main("train", "--data_path", "c.csv", "--outlier-bars", "refuse", *tiny_flags())
    assert code == 2 and "c.csv: open, high or low more than 1.5x" in err and "file lines 1, 101" in err
    assert not (here / "mlruns").exists()
    code, _, err = run_main("train", "--data_path", "c.csv", "--outlier-bars", "maybe", *tiny_flags())
    assert code == 2 and "--outlier-bars 'maybe' is not known" in err
    # the flag was this command's: the next command in the same process reads with the choice it had before
    assert os.environ[OUTLIER_VARIABLE] == "repair"
