"""`btc-ai data fetch` against a Binance mirror on 127.0.0.1 (tests/binance_mirror.py): every month verified
against its .CHECKSUM, verified files never fetched twice, a killed or dropped download resumed with a Range
request, transient faults retried, and what the user must fix (a damaged file, a missing month, bad flags)
as one line and exit 2 with nothing half-written under a final name. Nothing contacts the internet."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from datetime import date

import pandas as pd
import pytest
from binance_mirror import BUSY, DROP, STALL, Mirror, checksum_of, corrupted, kline_zip
from conftest import btc_ai_cmd, cli_env

from btc_ai.domain.data import load_candles
from btc_ai.domain.data.sources import FETCH_MANIFEST
from btc_ai.domain.synthetic import synthetic_candles

SYMBOL, INTERVAL = "BTCUSDT", "1h"
MONTHS = ("2024-01", "2024-02", "2024-03")


@pytest.fixture(scope="module")
def series() -> pd.DataFrame:
    """January to March 2024 of hourly candles (91 days)."""
    return synthetic_candles(n_rows=24 * 91, seed=5, start="2024-01-01", interval="1h")


def month_of(series: pd.DataFrame, stamp: str) -> pd.DataFrame:
    return series[series.index.strftime("%Y-%m") == stamp]


def name(stamp: str) -> str:
    return f"{SYMBOL}-{INTERVAL}-{stamp}.zip"


@pytest.fixture
def zips(tmp_path_factory: pytest.TempPathFactory, series: pd.DataFrame) -> dict[str, bytes]:
    scratch = tmp_path_factory.mktemp("fixtures")
    return {stamp: kline_zip(month_of(series, stamp), f"{SYMBOL}-{INTERVAL}-{stamp}.csv", scratch) for stamp in MONTHS}


@pytest.fixture
def mirror(zips: dict[str, bytes], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BTC_AI_FETCH_BACKOFF_S", "0")  # retries at once: the tests wait on nothing
    monkeypatch.delenv("BTC_AI_DATA_URL", raising=False)
    with Mirror() as served:
        for stamp, data in zips.items():
            served.publish(SYMBOL, INTERVAL, stamp, data)
        yield served


def fetch(run_main, mirror: Mirror, *extra: str, start: str = "2024-01", end: str = "2024-03"):
    return run_main("data", "fetch", SYMBOL, INTERVAL, "--from", start, "--to", end, "--base-url", mirror.url, *extra)


def error_line(err: str) -> str:
    """The one error line (retry warnings may come before it)."""
    lines = [line for line in err.splitlines() if not line.startswith("btc-ai: warning:")]
    assert len(lines) == 1, err
    assert lines[0].startswith(("btc-ai: error: ", "btc-ai data fetch: error: ")), err  # ours, or argparse's
    return lines[0]


def test_fetch_writes_every_month_verified_where_data_path_reads(here, run_main, mirror, zips, series) -> None:
    code, out, err = fetch(run_main, mirror)
    assert code == 0, err
    data = here / "data"
    assert sorted(p.name for p in data.iterdir()) == sorted([name(s) for s in MONTHS] + [FETCH_MANIFEST] +
                                                            [f"{name(s)}.CHECKSUM" for s in MONTHS])
    for stamp in MONTHS:
        assert (data / name(stamp)).read_bytes() == zips[stamp]
        assert (data / f"{name(stamp)}.CHECKSUM").read_bytes() == checksum_of(zips[stamp], name(stamp))
        frame, _ = load_candles(data / name(stamp))
        pd.testing.assert_frame_equal(frame, month_of(series, stamp), check_freq=False, check_like=True)
    assert [line.split()[:2] for line in out.splitlines()[:3]] == [["downloaded", name(s)] for s in MONTHS]
    assert "3 files (3 downloaded, 0 resumed, 0 already verified)" in out


def test_fetched_data_names_the_url_it_came_from(here, run_main, mirror, zips) -> None:
    """The manifest the fetch writes gives each file its URL in the report, and the dataset inputs' source is
    the URL; a file changed since it was fetched (another sha256) is not credited with it."""
    from btc_ai.tracking.run_model import DataInputs, DataSpan

    assert fetch(run_main, mirror)[0] == 0
    data = here / "data"
    _, report = load_candles(data)
    folder = f"{mirror.url}/data/spot/monthly/klines/{SYMBOL}/{INTERVAL}/"
    assert [f.url for f in report.files] == [folder + name(s) for s in MONTHS]
    assert [f.to_dict()["url"] for f in report.files] == [folder + name(s) for s in MONTHS]
    (record,) = DataInputs.of(str(data), "f" * 64, report).records([DataSpan("train", "a", "b", 1)])
    assert record["source_type"] == "http" and json.loads(record["source"]) == {"url": folder}
    assert [f["url"] for f in json.loads(record["profile"])["files"]] == [folder + name(s) for s in MONTHS]
    (one,) = DataInputs.of(name(MONTHS[0]), "f" * 64, load_candles(data / name(MONTHS[0]))[1]).records(
        [DataSpan("backtest", "a", "b", 1)])
    assert json.loads(one["source"]) == {"url": folder + name(MONTHS[0])}

    (data / name("2024-02")).write_bytes(kline_zip(month_of(synthetic_candles(n_rows=24 * 91, seed=6, start="2024-01-01",
                                                                              interval="1h"), "2024-02"),
                                                   f"{SYMBOL}-{INTERVAL}-2024-02.csv", here))
    _, report = load_candles(data)
    assert [bool(f.url) for f in report.files] == [True, False, True]
    (record,) = DataInputs.of(str(data), "f" * 64, report).records([DataSpan("train", "a", "b", 1)])
    assert record["source_type"] == "local"  # not all of it came from the URL


def test_second_run_downloads_nothing(here, run_main, mirror, monkeypatch) -> None:
    monkeypatch.setenv("BTC_AI_DATA_URL", mirror.url)  # the variable stands for --base-url
    args = ("data", "fetch", SYMBOL, INTERVAL, "--from", "2024-01", "--to", "2024-03")
    assert run_main(*args)[0] == 0
    asked = len(mirror.requests)
    code, out, _ = run_main(*args)
    assert code == 0
    assert len(mirror.requests) == asked  # not even a checksum asked for
    assert [line.split()[:2] for line in out.splitlines()[:3]] == [["verified", name(s)] for s in MONTHS]
    assert "0 downloaded, 0 resumed, 3 already verified" in out


def test_a_file_without_its_checksum_is_checked_not_downloaded_again(here, run_main, mirror) -> None:
    assert fetch(run_main, mirror)[0] == 0
    (here / "data" / f"{name('2024-02')}.CHECKSUM").unlink()
    code, out, _ = fetch(run_main, mirror)
    assert code == 0 and "verified   BTCUSDT-1h-2024-02.zip" in out
    assert mirror.zip_gets(mirror.paths["2024-02"]) == [None]  # the zip once, in the first run
    assert (here / "data" / f"{name('2024-02')}.CHECKSUM").is_file()


def test_a_transient_drop_is_retried_and_resumed_from_where_it_dropped(here, run_main, mirror, zips) -> None:
    feb = mirror.paths["2024-02"]
    mirror.faults[feb] = [DROP, DROP]
    mirror.faults[mirror.paths["2024-03"]] = [BUSY]
    code, out, err = fetch(run_main, mirror)
    assert code == 0, err
    assert (here / "data" / name("2024-02")).read_bytes() == zips["2024-02"]
    assert err.count("trying again") == 3, err
    half = len(zips["2024-02"]) // 2
    quarter = half + (len(zips["2024-02"]) - half) // 2
    assert mirror.zip_gets(feb) == [None, f"bytes={half}-", f"bytes={quarter}-"]  # each retry resumes
    assert "resumed    BTCUSDT-1h-2024-02.zip" in out
    assert not list((here / "data").glob("*.part"))


def test_a_persistent_drop_is_one_line_and_the_next_fetch_resumes(here, run_main, mirror, zips) -> None:
    feb = mirror.paths["2024-02"]
    mirror.faults[feb] = [DROP] * 5
    code, _, err = fetch(run_main, mirror)
    assert code == 2
    line = error_line(err)
    assert "BTCUSDT-1h-2024-02.zip: the connection dropped" in line and "5 attempts" in line, line
    data = here / "data"
    assert sorted(p.name for p in data.glob("*.zip")) == [name("2024-01")]  # nothing under Feb's final name
    part = data / f"{name('2024-02')}.part"
    kept = part.stat().st_size
    assert 0 < kept < len(zips["2024-02"]) and f"data/{part.name} and the next fetch resumes" in line
    assert mirror.zip_gets(mirror.paths["2024-03"]) == []

    code, out, err = fetch(run_main, mirror)
    assert code == 0, err
    assert mirror.zip_gets(feb)[-1] == f"bytes={kept}-"
    assert mirror.zip_gets(mirror.paths["2024-01"]) == [None]  # verified: never again
    assert (data / name("2024-02")).read_bytes() == zips["2024-02"] and not part.exists()
    assert "resumed    BTCUSDT-1h-2024-02.zip" in out and "verified   BTCUSDT-1h-2024-01.zip" in out


def test_a_mirror_that_ignores_range_sends_the_whole_file_which_replaces_the_part(here, run_main, mirror,
                                                                                 zips) -> None:
    mirror.honour_range = False
    feb = mirror.paths["2024-02"]
    mirror.faults[feb] = [DROP]
    code, out, err = fetch(run_main, mirror)
    assert code == 0, err
    assert len(mirror.zip_gets(feb)) == 2 and mirror.zip_gets(feb)[1] is not None  # asked for the rest, got all
    assert (here / "data" / name("2024-02")).read_bytes() == zips["2024-02"]  # not the half twice
    assert "downloaded BTCUSDT-1h-2024-02.zip" in out


@pytest.mark.slow
def test_a_killed_fetch_resumes_without_fetching_verified_files_again(tmp_path, mirror, zips) -> None:
    feb = mirror.paths["2024-02"]
    mirror.faults[feb] = [STALL]  # half of February, then the server holds the line until the kill
    env = {**cli_env(tmp_path), "BTC_AI_FETCH_BACKOFF_S": "0"}
    args = btc_ai_cmd("data", "fetch", SYMBOL, INTERVAL, "--from", "2024-01", "--to", "2024-03",
                      "--base-url", mirror.url)
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(f"downloaded {name('2024-01')}"), first
        assert mirror.stalled.wait(60)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    mirror.release.set()
    data = tmp_path / "data"
    assert not (data / name("2024-02")).exists()  # killed half-way: nothing under the final name
    part = data / f"{name('2024-02')}.part"
    kept = part.stat().st_size if part.exists() else 0
    assert kept <= len(zips["2024-02"]) // 2

    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert mirror.zip_gets(mirror.paths["2024-01"]) == [None]  # verified before the kill: not fetched again
    assert mirror.zip_gets(feb)[-1] == (f"bytes={kept}-" if kept else None)
    for stamp in MONTHS:
        assert (data / name(stamp)).read_bytes() == zips[stamp]
    assert f"verified   {name('2024-01')}" in done.stdout
    assert not list(data.glob("*.part"))


@pytest.mark.parametrize("damage", ["wrong checksum", "corrupt zip"])
def test_a_damaged_file_is_downloaded_again_once_then_one_line(here, run_main, mirror, zips, damage) -> None:
    feb = zips["2024-02"]
    if damage == "wrong checksum":
        mirror.publish(SYMBOL, INTERVAL, "2024-02", feb, checksum=checksum_of(zips["2024-01"], name("2024-02")))
        expected = "sha256"
    else:
        bad = corrupted(feb)
        mirror.publish(SYMBOL, INTERVAL, "2024-02", bad)  # its checksum is true: only the zip tells
        expected = "zip"
    code, _, err = fetch(run_main, mirror)
    assert code == 2
    line = error_line(err)
    assert line.startswith(f"btc-ai: error: {name('2024-02')}: ") and expected in line, line
    assert len(mirror.zip_gets(mirror.paths["2024-02"])) == 2  # downloaded again once, as a transient fault
    data = here / "data"
    assert sorted(p.name for p in data.iterdir()) == [name("2024-01"), f"{name('2024-01')}.CHECKSUM", FETCH_MANIFEST]


def test_a_month_the_mirror_lacks_is_one_line(here, run_main, mirror) -> None:
    del mirror.files[mirror.paths["2024-02"]]
    del mirror.files[f"{mirror.paths['2024-02']}.CHECKSUM"]
    code, _, err = fetch(run_main, mirror)
    assert code == 2
    line = error_line(err)
    assert "2024-02" in line and "404" in line, line
    assert sorted(p.name for p in (here / "data").glob("*.zip")) == [name("2024-01")]
    assert not list((here / "data").glob("*.part"))


@pytest.mark.parametrize("argv, words", [
    (["BTC/USDT", "1h", "--from", "2024-01", "--to", "2024-02"], "symbol 'BTC/USDT'"),
    (["BTCUSDT", "7m", "--from", "2024-01", "--to", "2024-02"], "interval '7m'"),
    (["BTCUSDT", "1h", "--from", "2024-03", "--to", "2024-02"], "after --to"),
    (["BTCUSDT", "1h", "--from", "2024-1", "--to", "2024-02"], "--from '2024-1' is not a month"),
    (["BTCUSDT", "1h", "--from", "2024-01", "--to", "2024-13"], "--to '2024-13' is not a month"),
    (["BTCUSDT", "1h", "--from", "2024-01", "--to", "2999-01"], "in the future"),
    (["BTCUSDT", "1h", "--from", "2024-01", "--to", "2024-02", "--market", "options"], "--market"),
    (["BTCUSDT", "1h", "--from", "2024-01", "--to", "2024-02", "--base-url", "ftp://x"], "--base-url 'ftp://x'"),
    (["BTCUSDT", "1h", "--from", "2024-01", "--to", "2024-02", "--dest", "afile/data"], "afile is a file"),
    (["BTCUSDT", "1h", "--from", "2024-01", "--to", "2024-02", "--parquet", "."], "--parquet . is a folder"),
])
def test_bad_input_is_one_line_and_nothing_is_created(here, run_main, mirror, argv, words) -> None:
    (here / "afile").write_text("x")
    before = sorted(p.name for p in here.rglob("*"))
    code, _out, err = run_main("data", "fetch", *argv, *([] if "--base-url" in argv else ["--base-url", mirror.url]))
    assert code == 2
    assert words in error_line(err), err
    assert sorted(p.name for p in here.rglob("*")) == before
    assert mirror.requests == []


def test_a_bad_base_url_variable_is_named(here, run_main, monkeypatch) -> None:
    monkeypatch.setenv("BTC_AI_DATA_URL", "data.binance.vision")
    code, _, err = run_main("data", "fetch", SYMBOL, INTERVAL, "--from", "2024-01", "--to", "2024-01")
    assert code == 2 and "BTC_AI_DATA_URL 'data.binance.vision' is not an http(s) URL" in error_line(err)
    assert not (here / "data").exists()


def test_parquet_holds_the_joined_months(here, run_main, mirror, series) -> None:
    code, out, err = fetch(run_main, mirror, "--parquet", "out/candles.parquet")
    assert code == 0, err
    frame, _report = load_candles(here / "out" / "candles.parquet")
    pd.testing.assert_frame_equal(frame, series, check_freq=False, check_like=True)
    assert f"parquet: out/candles.parquet: {len(series):,} candles" in out
    assert [p.name for p in (here / "out").iterdir()] == ["candles.parquet"]  # no scratch left beside it


def test_futures_um_reads_the_futures_folder(here, run_main, mirror, series, tmp_path_factory) -> None:
    scratch = tmp_path_factory.mktemp("futures")
    mirror.files.clear()
    for stamp in MONTHS[:2]:  # futures dumps carry a header line
        data = kline_zip(month_of(series, stamp), f"{SYMBOL}-{INTERVAL}-{stamp}.csv", scratch, header=True)
        mirror.publish(SYMBOL, INTERVAL, stamp, data, market="futures-um")
    code, _out, err = fetch(run_main, mirror, "--market", "futures-um", "--parquet", "f.parquet", end="2024-02")
    assert code == 0, err
    assert {tuple(p.split("/")[2:4]) for p, _ in mirror.requests} == {("futures", "um")}
    frame, _ = load_candles(here / "f.parquet")
    pd.testing.assert_frame_equal(frame, series[: 24 * 60], check_freq=False, check_like=True)


def test_the_month_under_way_comes_as_days_and_its_month_replaces_them(tmp_path, mirror, series) -> None:
    from btc_ai.desk.data_fetch import check_request, fetch_klines

    for day in range(1, 14):  # 2024-03-01 .. 13 published; the 14th (yesterday) not yet
        stamp = f"2024-03-{day:02d}"
        frame = series[series.index.strftime("%Y-%m-%d") == stamp]
        mirror.publish(SYMBOL, INTERVAL, stamp, kline_zip(frame, f"{SYMBOL}-{INTERVAL}-{stamp}.csv", tmp_path))
    march = mirror.files.pop(mirror.paths["2024-03"])
    dest = tmp_path / "data"
    lines: list[str] = []
    request = check_request(SYMBOL, INTERVAL, "2024-02", "2024-03", dest=dest, base_url=mirror.url,
                            today=date(2024, 3, 15))
    result = fetch_klines(request, say=lines.append, warn=lines.append)
    assert [p.name for p in result.files] == [name("2024-02")] + [name(f"2024-03-{d:02d}") for d in range(1, 14)]
    assert any(line.startswith(f"skipped    {name('2024-03-14')}") for line in lines)

    mirror.files[mirror.paths["2024-03"]] = march  # April: March is published as one file
    request = check_request(SYMBOL, INTERVAL, "2024-03", "2024-03", dest=dest, base_url=mirror.url,
                            today=date(2024, 4, 2))
    fetch_klines(request, say=lines.append, warn=lines.append)
    assert sorted(p.name for p in dest.glob("*.zip")) == [name("2024-02"), name("2024-03")]
    assert not list(dest.glob("*-2024-03-*"))  # the days it covers are gone, their checksums too


def test_a_past_month_missing_is_refused_but_the_month_under_way_is_not(tmp_path, mirror) -> None:
    from btc_ai.desk.data_download import FetchError
    from btc_ai.desk.data_fetch import check_request, fetch_klines

    request = check_request(SYMBOL, INTERVAL, "2024-04", "2024-04", dest=tmp_path / "d", base_url=mirror.url,
                            today=date(2024, 5, 1))
    with pytest.raises(FetchError, match="publishes a month's file in the first days of the next month"):
        fetch_klines(request, say=print, warn=print)
    request = check_request(SYMBOL, INTERVAL, "2024-05", "2024-05", dest=tmp_path / "d", base_url=mirror.url,
                            today=date(2024, 5, 1))
    lines: list[str] = []
    assert fetch_klines(request, say=lines.append, warn=lines.append).files == []
    assert "nothing published yet" in lines[0]
    assert not (tmp_path / "d").exists()


def test_the_command_lists_the_intervals_the_fetcher_knows() -> None:
    from btc_ai.cli.data import INTERVALS
    from btc_ai.desk.data_fetch import INTERVALS as KNOWN

    assert INTERVALS.split() == list(KNOWN)


def test_a_file_that_cannot_be_written_is_one_line(here, run_main, mirror) -> None:
    (here / "data" / f"{name('2024-01')}.part").mkdir(parents=True)  # in the way of the download (root ignores modes)
    code, _, err = fetch(run_main, mirror)
    assert code == 2
    assert f"{name('2024-01')}: cannot write into data" in error_line(err)
    assert not (here / "data" / name("2024-01")).exists()
