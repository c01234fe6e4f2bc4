"""Tests for btc_ai.domain.data: every supported file layout, each rejection's message, repairs, resampling."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from btc_ai.domain.data import (
    COLUMNS,
    DataReport,
    clean_candles,
    data_fingerprint,
    load_candles,
    resample_candles,
    validate_candles,
)
from btc_ai.domain.errors import DataValidationError

REAL_FILE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "btcusdt_5m_2021-06_binance.csv"
START = pd.Timestamp("2021-06-01 00:00", tz="UTC")


def make_candles(n: int = 36, freq: str = "5min", start: pd.Timestamp = START, seed: int = 0) -> pd.DataFrame:
    """Consistent OHLCV with cent prices and 3-decimal volume, so text round-trips are exact."""
    rng = np.random.default_rng(seed)
    close = np.round(37000 + np.cumsum(rng.normal(0, 40, n)), 2)
    open_ = np.r_[37000.0, close[:-1]]
    high = np.round(np.maximum(open_, close) + rng.uniform(0, 30, n), 2)
    low = np.round(np.minimum(open_, close) - rng.uniform(0, 30, n), 2)
    volume = np.round(rng.uniform(50, 500, n), 3)
    index = pd.date_range(start, periods=n, freq=freq, name="timestamp")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )


def epoch_ms(index: pd.DatetimeIndex) -> np.ndarray:
    return index.as_unit("ns").asi8 // 1_000_000


def binance_lines(df: pd.DataFrame, unit: str = "ms") -> list[str]:
    scale = {"ms": 1, "us": 1000}[unit]
    lines = []
    for ms, row in zip(epoch_ms(df.index), df.itertuples(index=False), strict=True):
        t = ms * scale
        close_t = t + 299_999 * scale
        lines.append(
            f"{t},{row.open:.8f},{row.high:.8f},{row.low:.8f},{row.close:.8f},{row.volume:.8f},{close_t},"
            f"{row.volume * row.close:.8f},1234,{row.volume / 2:.8f},{row.volume * row.close / 2:.8f},0"
        )
    return lines


def headed_lines(df: pd.DataFrame, stamp=lambda ts: ts.isoformat()) -> list[str]:
    lines = ["timestamp,open,high,low,close,volume"]
    for ts, row in zip(df.index, df.itertuples(index=False), strict=True):
        lines.append(f"{stamp(ts)},{row.open},{row.high},{row.low},{row.close},{row.volume}")
    return lines


def write(path: Path, lines: list[str], newline: str = "\n") -> Path:
    path.write_bytes((newline.join(lines) + newline).encode())
    return path


def assert_same_candles(got: pd.DataFrame, want: pd.DataFrame, *, volume: bool = True) -> None:
    assert list(got.columns) == COLUMNS
    assert got.index.name == "timestamp"
    assert str(got.index.tz) == "UTC"
    assert all(got[c].dtype == np.float64 for c in COLUMNS)
    assert got.index.equals(want.index.tz_convert("UTC"))
    cols = COLUMNS if volume else COLUMNS[:4]
    np.testing.assert_allclose(got[cols].to_numpy(), want[cols].to_numpy(), rtol=0, atol=1e-9)


def reject(path_or_df, match: str | None = None, **kwargs) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        load_candles(path_or_df, **kwargs)
    message = str(info.value)
    assert "\n" not in message, "messages must be one line"
    if match is not None:
        assert match in message, message
    return info.value


# ---------------------------------------------------------------------------------------------------
# Layouts


def test_binance_kline_dump_ms(tmp_path):
    want = make_candles()
    df, report = load_candles(write(tmp_path / "k.csv", binance_lines(want)))
    assert_same_candles(df, want)
    assert report.layout == "binance-kline"
    assert report.rows == 36 and report.interval == pd.Timedelta("5min") and report.gaps == 0


def test_binance_kline_dump_microseconds(tmp_path):
    want = make_candles()
    df, report = load_candles(write(tmp_path / "k.csv", binance_lines(want, unit="us")))
    assert_same_candles(df, want)
    assert report.layout == "binance-kline"


def test_binance_with_header_row(tmp_path):
    want = make_candles()
    header = (
        "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
        "taker_buy_quote_volume,ignore"
    )
    df, report = load_candles(write(tmp_path / "k.csv", [header, *binance_lines(want)]))
    assert_same_candles(df, want)
    assert report.layout == "binance-kline"


def test_generic_iso_with_crlf(tmp_path):
    want = make_candles()
    path = write(tmp_path / "g.csv", headed_lines(want), newline="\r\n")
    assert b"\r\n" in path.read_bytes()
    df, report = load_candles(path)
    assert_same_candles(df, want)
    assert report.layout == "generic-csv"


def test_iso_with_offsets_is_converted_to_utc(tmp_path):
    want = make_candles()
    lines = headed_lines(want, stamp=lambda ts: ts.tz_convert("Europe/Berlin").isoformat())
    assert "+02:00" in lines[1]
    df, _ = load_candles(write(tmp_path / "o.csv", lines))
    assert df.index[0] == pd.Timestamp("2021-06-01 00:00", tz="UTC")
    assert_same_candles(df, want)


@pytest.mark.parametrize(
    "stamp",
    [
        lambda ts: ts.strftime("%Y-%m-%d %H:%M:%S"),  # naive: read as UTC
        lambda ts: ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
        lambda ts: str(ts.value // 1_000_000_000),  # epoch seconds
        lambda ts: str(ts.value // 1_000_000),  # epoch milliseconds
        lambda ts: str(ts.value // 1_000),  # epoch microseconds
    ],
    ids=["naive", "zulu", "epoch-s", "epoch-ms", "epoch-us"],
)
def test_timestamp_spellings(tmp_path, stamp):
    want = make_candles()
    df, report = load_candles(write(tmp_path / "t.csv", headed_lines(want, stamp=stamp)))
    assert_same_candles(df, want)
    assert report.interval == pd.Timedelta("5min")


@pytest.mark.parametrize(
    ("header", "volume_expected"),
    [
        ("Timestamp,Open,High,Low,Close,Volume", True),
        ("TIME,OPEN,HIGH,LOW,CLOSE,VOLUME", True),
        ("Open time,Open,High,Low,Close,Volume", True),
        ("date,open,high,low,close", False),
    ],
)
def test_header_names_in_any_case(tmp_path, header, volume_expected):
    want = make_candles()
    body = headed_lines(want)[1:]
    if not volume_expected:
        body = [line.rsplit(",", 1)[0] for line in body]
    df, _ = load_candles(write(tmp_path / "h.csv", [header, *body]))
    assert_same_candles(df, want, volume=volume_expected)
    if not volume_expected:
        assert (df["volume"] == 0.0).all()


def test_base_volume_wins_even_when_quote_volume_comes_first(tmp_path):
    want = make_candles()
    lines = ["Date,Open,High,Low,Close,Volume USDT,Volume BTC"]
    for line in headed_lines(want)[1:]:
        *head, volume = line.split(",")
        lines.append(",".join([*head, f"{float(volume) * 37000:.3f}", volume]))
    df, _ = load_candles(write(tmp_path / "v.csv", lines))
    assert_same_candles(df, want)


def test_adj_close_is_used_only_when_there_is_no_close(tmp_path):
    want = make_candles(freq="1D")
    lines = ["Date,Open,High,Low,Adj Close,Volume"]
    lines += [line.replace("+00:00", "") for line in headed_lines(want)[1:]]
    df, _ = load_candles(write(tmp_path / "a.csv", lines))
    assert_same_candles(df, want)


def test_cryptodatadownload_export(tmp_path):
    want = make_candles(freq="1h")
    lines = [
        "https://www.CryptoDataDownload.com",
        "unix,date,symbol,open,high,low,close,Volume BTC,Volume USDT,tradecount",
    ]
    for ms, ts, row in zip(epoch_ms(want.index), want.index, want.itertuples(index=False), strict=True):
        lines.append(
            f"{ms},{ts:%Y-%m-%d %H:%M:%S},BTC/USDT,{row.open},{row.high},{row.low},{row.close},"
            f"{row.volume},{row.volume * row.close:.2f},4321"
        )
    lines = [lines[0], lines[1], *reversed(lines[2:])]  # CDD writes newest first
    df, report = load_candles(write(tmp_path / "Binance_BTCUSDT_1h.csv", lines))
    assert_same_candles(df, want)  # base-asset volume (BTC), not USDT
    assert report.layout == "cryptodatadownload"
    assert report.was_unsorted is True
    assert report.interval == pd.Timedelta("1h")


def test_bitstamp_export_with_nan_rows(tmp_path):
    want = make_candles(n=40, freq="1min")
    nan_at = {3, 4, 17, 30}
    lines = ["Timestamp,Open,High,Low,Close,Volume_(BTC),Volume_(Currency),Weighted_Price"]
    for i, (ts, row) in enumerate(zip(want.index, want.itertuples(index=False), strict=True)):
        secs = ts.value // 1_000_000_000
        if i in nan_at:
            lines.append(f"{secs},NaN,NaN,NaN,NaN,NaN,NaN,NaN")
        else:
            lines.append(
                f"{secs},{row.open},{row.high},{row.low},{row.close},{row.volume},"
                f"{row.volume * row.close:.4f},{row.close}"
            )
    df, report = load_candles(write(tmp_path / "bitstampUSD_1-min_data.csv", lines))
    keep = [i for i in range(40) if i not in nan_at]
    assert_same_candles(df, want.iloc[keep])
    assert report.layout == "bitstamp"
    assert report.empty_rows_dropped == 4
    assert report.gaps == 4  # the NaN bars are missing bars, not an error
    assert report.interval == pd.Timedelta("1min")


def yf_frame(want: pd.DataFrame) -> pd.DataFrame:
    return want.assign(adj=want["close"] * 0.5)  # Adj Close differs, so picking it would show


def test_yfinance_old_export(tmp_path):
    want = make_candles(freq="1h")
    lines = ["Datetime,Open,High,Low,Close,Adj Close,Volume"]
    for ts, row in zip(want.index, yf_frame(want).itertuples(index=False), strict=True):
        lines.append(
            f"{ts:%Y-%m-%d %H:%M:%S}+00:00,{row.open},{row.high},{row.low},{row.close},{row.adj},{row.volume}"
        )
    df, report = load_candles(write(tmp_path / "BTC-USD.csv", lines))
    assert_same_candles(df, want)
    assert report.layout == "yfinance"


def test_yfinance_daily_date_column(tmp_path):
    want = make_candles(freq="1D")
    lines = ["Date,Open,High,Low,Close,Adj Close,Volume"]
    for ts, row in zip(want.index, yf_frame(want).itertuples(index=False), strict=True):
        lines.append(f"{ts:%Y-%m-%d},{row.open},{row.high},{row.low},{row.close},{row.adj},{row.volume}")
    df, report = load_candles(write(tmp_path / "BTC-USD.csv", lines))
    assert_same_candles(df, want)
    assert report.interval == pd.Timedelta("1D")


def test_yfinance_new_multirow_header(tmp_path):
    want = make_candles(freq="1h")
    lines = [
        "Price,Adj Close,Close,High,Low,Open,Volume",
        "Ticker,BTC-USD,BTC-USD,BTC-USD,BTC-USD,BTC-USD,BTC-USD",
        "Datetime,,,,,,",
    ]
    for ts, row in zip(want.index, yf_frame(want).itertuples(index=False), strict=True):
        lines.append(
            f"{ts:%Y-%m-%d %H:%M:%S}+00:00,{row.adj},{row.close},{row.high},{row.low},{row.open},{row.volume}"
        )
    df, report = load_candles(write(tmp_path / "BTC-USD.csv", lines))
    assert_same_candles(df, want)
    assert report.layout == "yfinance"


def test_parquet_with_datetime_index(tmp_path):
    want = make_candles()
    path = tmp_path / "c.parquet"
    want.tz_convert("Asia/Tokyo").to_parquet(path)
    df, report = load_candles(path)
    assert_same_candles(df, want)
    assert report.layout == "parquet"


def test_parquet_with_epoch_column_and_capitalised_names(tmp_path):
    want = make_candles()
    flat = want.reset_index(drop=True).rename(columns=str.title)
    flat.insert(0, "open_time", epoch_ms(want.index))
    path = tmp_path / "c.pq"
    flat.to_parquet(path)
    df, report = load_candles(path)
    assert_same_candles(df, want)
    assert report.layout == "parquet"


def test_semicolon_with_decimal_commas_and_tabs(tmp_path):
    want = make_candles()
    semi = [line.replace(",", ";") for line in headed_lines(want)]
    semi = [semi[0]] + [
        ";".join(f.replace(".", ",") if i else f for i, f in enumerate(line.split(";"))) for line in semi[1:]
    ]
    df, _ = load_candles(write(tmp_path / "s.csv", semi))
    assert_same_candles(df, want)
    tabs = [line.replace(",", "\t") for line in headed_lines(want)]
    df, _ = load_candles(write(tmp_path / "t.tsv", tabs))
    assert_same_candles(df, want)


def test_gzip_csv(tmp_path):
    want = make_candles()
    path = tmp_path / "k.csv.gz"
    path.write_bytes(gzip.compress(("\n".join(binance_lines(want)) + "\n").encode()))
    df, _ = load_candles(path)
    assert_same_candles(df, want)


def test_dataframe_input_and_pandas_to_csv_round_trip(tmp_path):
    want = make_candles()
    df, report = load_candles(want.tz_localize(None))  # naive index means UTC
    assert_same_candles(df, want)
    assert report.layout == "dataframe" and report.source == "<DataFrame>"
    path = tmp_path / "roundtrip.csv"
    want.rename_axis(None).to_csv(path)  # unnamed index leaves a blank first header cell
    df, _ = load_candles(str(path))
    assert_same_candles(df, want)


@pytest.mark.realdata
def test_real_binance_file_loads():
    if not REAL_FILE.exists():
        pytest.skip(f"{REAL_FILE} not present on this machine")
    df, report = load_candles(REAL_FILE)
    assert report.rows == len(df) == 8640
    assert report.interval == pd.Timedelta("5min")
    assert report.gaps == 0 and report.duplicates_dropped == 0 and report.empty_rows_dropped == 0
    assert report.start == pd.Timestamp("2021-06-01 00:00", tz="UTC")
    assert report.end == pd.Timestamp("2021-06-30 23:55", tz="UTC")
    assert df["close"].between(28_000, 42_000).all()
    assert report.layout == "binance-kline"


# ---------------------------------------------------------------------------------------------------
# Repairs and the report


def test_duplicates_unsorted_and_blank_rows_are_repaired_and_counted(tmp_path):
    want = make_candles()
    lines = headed_lines(want)
    body = lines[1:]
    shuffled = [body[5], *body[:5], *body[6:]]  # one row out of order
    dupes = [*shuffled[:10], shuffled[9], shuffled[3], *shuffled[10:]]
    dupes.insert(20, ",,,,,")
    dupes.insert(8, "")
    df, report = load_candles(write(tmp_path / "r.csv", [lines[0], *dupes]))
    assert_same_candles(df, want)
    assert report.duplicates_dropped == 2
    assert report.was_unsorted is True
    assert report.empty_rows_dropped == 2
    assert "duplicate" in report.summary() and "sorted" in report.summary()


def test_duplicate_keeps_first_occurrence(tmp_path):
    want = make_candles()
    lines = headed_lines(want)
    changed = lines[4].rsplit(",", 1)[0] + ",999.0"
    df, report = load_candles(write(tmp_path / "d.csv", [*lines[:5], changed, *lines[5:]]))
    assert report.duplicates_dropped == 1
    assert df["volume"].iloc[3] == want["volume"].iloc[3]


def test_gaps_are_counted_not_rejected(tmp_path):
    want = make_candles(n=40)
    kept = want.drop(want.index[[5, 6, 7, 20]])
    df, report = load_candles(write(tmp_path / "g.csv", binance_lines(kept)))
    assert report.gaps == 4
    assert report.interval == pd.Timedelta("5min")
    assert len(df) == 36


def test_cut_off_last_row_is_dropped_and_recorded(tmp_path):
    want = make_candles()
    lines = binance_lines(want)
    path = tmp_path / "cut.csv"
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:30])  # download stopped mid-row
    df, report = load_candles(path)
    assert report.truncated_rows_dropped == 1
    assert_same_candles(df, want.iloc[:-1])
    assert "cut-off" in report.summary()


def test_report_to_dict_and_summary(tmp_path):
    want = make_candles()
    _, report = load_candles(write(tmp_path / "k.csv", binance_lines(want)))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["rows"] == 36 and data["interval"] == "5min" and data["interval_seconds"] == 300.0
    assert data["start"] == "2021-06-01T00:00:00+00:00"
    assert data["layout"] == "binance-kline"
    line = report.summary()
    assert "\n" not in line and "36 rows" in line and "5min" in line
    with pytest.raises(AttributeError):
        report.rows = 3  # frozen


# ---------------------------------------------------------------------------------------------------
# Rejections


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_candles(tmp_path / "nope.csv")


def test_empty_file(tmp_path):
    (tmp_path / "e.csv").write_bytes(b"")
    reject(tmp_path / "e.csv", "empty")
    (tmp_path / "w.csv").write_text("\n\n  \n")
    reject(tmp_path / "w.csv", "empty")


def test_header_only(tmp_path):
    err = reject(write(tmp_path / "h.csv", ["timestamp,open,high,low,close,volume"]), "no data rows")
    assert "header" in str(err)


def test_no_timestamp_column(tmp_path):
    want = make_candles()
    lines = ["when,open,high,low,close"] + [",".join(line.split(",")[:5]) for line in headed_lines(want)[1:]]
    err = reject(write(tmp_path / "n.csv", lines), "no recognisable timestamp column")
    assert "'when'" in str(err) and "timestamp" in str(err).split(";")[-1]


def test_no_price_columns_names_what_was_found(tmp_path):
    lines = ["timestamp,price,qty"] + [f"{1622505600 + 300 * i},{37000 + i},1" for i in range(10)]
    err = reject(write(tmp_path / "p.csv", lines), "no price columns open, high, low, close")
    assert "'price'" in str(err) and "'qty'" in str(err) and "name them open, high, low, close" in str(err)


def test_non_numeric_prices_name_the_lines(tmp_path):
    lines = headed_lines(make_candles())
    parts = lines[7].split(",")
    parts[4] = "n/a?"
    lines[7] = ",".join(parts)
    err = reject(write(tmp_path / "x.csv", lines), "non-numeric or missing prices")
    assert "file line 8" in str(err)  # header is line 1, so lines[7] is line 8
    assert "'n/a?'" in str(err) and "clean_candles" in str(err)
    assert err.rows == [8]


def test_high_below_low(tmp_path):
    want = make_candles()
    bad = want.copy()
    bad.iloc[[2, 9], [1, 2]] = bad.iloc[[2, 9], [2, 1]].to_numpy()  # swap high and low
    err = reject(write(tmp_path / "k.csv", binance_lines(bad)), "high < low")
    assert "file lines 3, 10" in str(err) and "swapped" in str(err)
    assert err.rows == [3, 10]


def test_non_positive_prices(tmp_path):
    bad = make_candles()
    bad.iloc[4, 2] = 0.0
    err = reject(write(tmp_path / "k.csv", binance_lines(bad)), "non-positive prices")
    assert "file line 5" in str(err) and "> 0" in str(err)


def test_close_above_high(tmp_path):
    bad = make_candles()
    bad.iloc[6, 3] = bad.iloc[6, 1] + 100
    err = reject(write(tmp_path / "k.csv", binance_lines(bad)), "open/close outside [low, high]")
    assert "file line 7" in str(err) and "column order" in str(err)


def test_many_bad_rows_are_summarised(tmp_path):
    bad = make_candles()
    rows = [1, 3, 5, 7, 9, 11, 13, 15]
    bad.iloc[rows, 0] = -1.0
    err = reject(write(tmp_path / "k.csv", binance_lines(bad)), "file lines 2, 4, 6, 8, 10 and 3 more")
    assert err.rows == [r + 1 for r in rows]


def test_mixed_five_minute_and_hourly_data(tmp_path):
    five = make_candles(n=30)
    hourly = make_candles(n=24, freq="1h", start=five.index[-1] + pd.Timedelta("1h"), seed=1)
    err = reject(write(tmp_path / "m.csv", binance_lines(pd.concat([five, hourly]))), "mixed interval")
    message = str(err)
    assert "5min" in message and "1h" in message
    assert "file lines 31, 32, 33, 34, 35 and" in message  # first hourly bar follows 30 five-minute bars
    assert "resample" in message


def test_off_grid_step_is_mixed_interval(tmp_path):
    want = make_candles()
    index = want.index.to_list()
    index[10:] = [ts + pd.Timedelta("2min") for ts in index[10:]]
    shifted = want.set_axis(pd.DatetimeIndex(index, name="timestamp"))
    err = reject(write(tmp_path / "k.csv", binance_lines(shifted)), "not a multiple of the dominant 5min")
    assert "file line 11" in str(err) and err.rows == [11]


def test_too_few_rows_names_the_config_key(tmp_path):
    path = write(tmp_path / "k.csv", binance_lines(make_candles()))
    err = reject(path, "only 36 candle rows, but 500 are needed", min_rows=500)
    assert err.key == "MAX_STEPS_PER_EPISODE"
    _, report = load_candles(path, min_rows=36)
    assert report.rows == 36


def test_malformed_row_inside_the_file(tmp_path):
    lines = binance_lines(make_candles())
    lines[11] = lines[11][:25]
    err = reject(write(tmp_path / "k.csv", lines), "wrong number of fields at file line 12")
    assert "expected 12, line 12 has 2" in str(err)


def test_binary_garbage(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "garbage.csv"
    path.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    reject(path, "not a text file")


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1" + b"\x00\x01garbage" * 10)
    reject(path, "not a readable Parquet file")


def test_single_column_file(tmp_path):
    want = make_candles()
    lines = [line.replace(",", " ") for line in headed_lines(want, stamp=lambda ts: str(ts.value // 10**9))]
    reject(write(tmp_path / "s.txt", lines), "single column")


def test_unreadable_timestamps(tmp_path):
    lines = headed_lines(make_candles())
    lines[5] = "yesterday-ish" + lines[5][lines[5].index(",") :]
    err = reject(write(tmp_path / "t.csv", lines), "unreadable or out-of-range timestamps")
    assert "file line 6" in str(err) and "ISO 8601" in str(err)


# ---------------------------------------------------------------------------------------------------
# validate / clean / fingerprint / resample


def test_validate_candles_accepts_clean_and_rejects_dirty():
    want = make_candles()
    report = validate_candles(want, min_rows=10)
    assert isinstance(report, DataReport) and report.rows == 36 and report.gaps == 0
    dup = pd.concat([want, want.iloc[[4]]]).sort_index(kind="stable")
    with pytest.raises(DataValidationError, match="duplicate timestamps at row 6 "):
        validate_candles(dup)
    nan = want.copy()
    nan.iloc[3, 0] = np.nan
    with pytest.raises(DataValidationError, match=r"missing or non-finite prices at row 4 \(1-based\)"):
        validate_candles(nan)
    with pytest.raises(DataValidationError) as info:
        validate_candles(want, min_rows=100)
    assert info.value.key == "MAX_STEPS_PER_EPISODE"


def test_clean_candles_repairs_what_validate_rejects():
    want = make_candles()
    dirty = want.copy()
    dirty.iloc[2, 3] = np.nan
    dirty.iloc[5, 1] = dirty.iloc[5, 2] - 1  # high < low
    dirty.iloc[8, 0] = -5.0
    dirty = pd.concat([dirty, dirty.iloc[[10]]]).iloc[::-1]
    with pytest.raises(DataValidationError):
        validate_candles(dirty)
    cleaned, actions = clean_candles(dirty)
    validate_candles(cleaned)
    assert len(cleaned) == 33
    text = " | ".join(actions)
    assert "non-finite" in text and "non-positive" in text and "high < low" in text
    assert "1 duplicate" in text and "sorted" in text
    assert_same_candles(cleaned, want.drop(want.index[[2, 5, 8]]))
    assert clean_candles(want)[1] == []


def test_fingerprint_is_the_same_across_layouts(tmp_path):
    want = make_candles()
    a, _ = load_candles(write(tmp_path / "k.csv", binance_lines(want)))
    b, _ = load_candles(
        write(
            tmp_path / "h.csv", headed_lines(want, stamp=lambda ts: ts.tz_convert("US/Eastern").isoformat())
        )
    )
    want.to_parquet(tmp_path / "p.parquet")
    c, _ = load_candles(tmp_path / "p.parquet")
    assert data_fingerprint(a) == data_fingerprint(b) == data_fingerprint(c) == data_fingerprint(want)
    assert len(data_fingerprint(a)) == 64
    nudged = want.copy()
    nudged.iloc[0, 4] += 0.001
    assert data_fingerprint(nudged) != data_fingerprint(want)


def test_resample_hand_made_example():
    index = pd.date_range("2021-06-01 00:00", periods=7, freq="5min", tz="UTC", name="timestamp")
    df = pd.DataFrame(
        {
            "open": [10.0, 11, 12, 13, 14, 15, 16],
            "high": [11.0, 15, 13, 14, 20, 16, 17],
            "low": [9.0, 10, 8, 12, 13, 14, 15],
            "close": [11.0, 12, 13, 14, 15, 16, 17],
            "volume": [1.0, 2, 3, 4, 5, 6, 7],
        },
        index=index,
    ).drop(index[3:6])  # 00:15-00:25 missing: the second 15-minute bin is empty
    out = resample_candles(df, "15min")
    assert list(out.index) == [
        pd.Timestamp("2021-06-01 00:00", tz="UTC"),
        pd.Timestamp("2021-06-01 00:30", tz="UTC"),
    ]
    assert out.iloc[0].to_dict() == {"open": 10.0, "high": 15.0, "low": 8.0, "close": 13.0, "volume": 6.0}
    assert out.iloc[1].to_dict() == {"open": 16.0, "high": 17.0, "low": 15.0, "close": 17.0, "volume": 7.0}
    assert list(out.columns) == COLUMNS and out.index.name == "timestamp"


def test_resample_hourly_bins_are_left_labelled():
    df = make_candles(n=36)
    out = resample_candles(df, "1h")
    assert len(out) == 3 and out.index[1] == START + pd.Timedelta("1h")
    assert out["volume"].sum() == pytest.approx(df["volume"].sum())
    assert out["high"].iloc[0] == df["high"].iloc[:12].max()


@pytest.mark.parametrize("timeframe", ["1min", "7min", "soon"])
def test_resample_rejects_bad_timeframes(timeframe):
    with pytest.raises(DataValidationError) as info:
        resample_candles(make_candles(), timeframe)
    assert info.value.key == "TIMEFRAME"
    assert timeframe in str(info.value)


# ---------------------------------------------------------------------------------------------------
# Text dates: day-first or month-first, as the file's own evidence says (or as stated), never guessed


def european_lines(df: pd.DataFrame, stamp: str, sep: str = ";", decimal: str = ",",
                   header: str = "Date;Open;High;Low;Close;Volume") -> list[str]:
    """A regional export: dates in ``stamp`` (strftime), ``sep`` between fields, ``decimal`` in numbers."""
    lines = [header]
    for ts, row in zip(df.index, df.itertuples(index=False), strict=True):
        numbers = [f"{x}".replace(".", decimal) for x in row]
        lines.append(sep.join([ts.strftime(stamp), *numbers]))
    return lines


@pytest.mark.parametrize(
    ("start", "n", "freq", "stamp", "sep", "decimal", "evidence"),
    [
        ("2021-06-08", 2016, "5min", "%d.%m.%Y %H:%M", ";", ",", "day above 12"),  # the file: 8-14 June
        ("2021-06-08", 1152, "5min", "%d.%m.%Y %H:%M", ";", ",", "irregular steps"),  # 8-11 June: only the grid tells
        ("2021-06-01", 20, "1D", "%d.%m.%Y", ";", ",", "day above 12"),  # day-first without a time
        ("2021-06-01", 12, "1D", "%d/%m/%Y", ",", ".", "irregular steps"),  # 1-12 June daily: months would be ragged
        ("2021-06-08", 2016, "5min", "%m/%d/%Y %H:%M", ",", ".", "day above 12"),  # US month-first
        ("2021-06-01", 1152, "5min", "%m/%d/%Y %H:%M", ",", ".", "irregular steps"),
        ("2021-06-01", 600, "5min", "%m/%d/%Y %I:%M %p", ",", ".", "irregular steps"),  # US with AM/PM
        ("2021-06-01", 600, "5min", "%d-%m-%y %H:%M:%S", "\t", ",", "irregular steps"),  # two-digit years, tabs
    ],
    ids=["eu-evidence", "eu-by-interval", "eu-daily", "eu-daily-ambiguous", "us-evidence", "us-by-interval",
         "us-ampm", "eu-short-year"],
)
def test_regional_dates_are_read_the_way_the_file_says(tmp_path, start, n, freq, stamp, sep, decimal, evidence):
    want = make_candles(n=n, freq=freq, start=pd.Timestamp(start, tz="UTC"))
    header = sep.join(["Date", "Open", "High", "Low", "Close", "Volume"])
    df, report = load_candles(write(tmp_path / "r.csv", european_lines(want, stamp, sep, decimal, header)))
    assert_same_candles(df, want)
    assert report.gaps == 0 and not report.was_unsorted
    order = "month-first" if stamp.startswith("%m") else "day-first"
    assert report.date_reading.startswith(f"dates read {order}") and evidence in report.date_reading
    assert report.to_dict()["date_reading"] == report.date_reading
    assert report.date_reading in report.summary()


def test_iso_and_epoch_files_need_no_date_reading(tmp_path):
    want = make_candles()
    _, report = load_candles(write(tmp_path / "iso.csv", headed_lines(want)))
    assert report.date_reading == "" and "dates read" not in report.summary()
    _, report = load_candles(write(tmp_path / "iso.csv", headed_lines(want)), date_format="day-first")
    assert report.date_reading == ""  # ISO is unambiguous whatever is stated


def test_a_file_that_cannot_tell_is_refused_with_how_to_state_the_format(tmp_path):
    want = make_candles(n=288, start=pd.Timestamp("2021-06-08", tz="UTC"))  # one day: both readings regular
    path = write(tmp_path / "one_day.csv", european_lines(want, "%d.%m.%Y %H:%M"))
    err = reject(path, "may be day-first or month-first")
    assert "--date-format day-first" in str(err) and "date_format=" in str(err) and str(path) in str(err)
    df, report = load_candles(path, date_format="day-first")
    assert_same_candles(df, want)
    assert report.date_reading == "dates read day-first (as stated)"
    df, _ = load_candles(path, date_format="month-first")
    assert df.index[0] == pd.Timestamp("2021-08-06", tz="UTC")  # as stated, even if odd


def test_a_stated_order_the_file_contradicts_is_refused(tmp_path):
    want = make_candles(n=2016, start=pd.Timestamp("2021-06-08", tz="UTC"))
    path = write(tmp_path / "eu.csv", european_lines(want, "%d.%m.%Y %H:%M"))
    err = reject(path, "the dates are not month-first", date_format="month-first")
    assert "'13.06.2021 00:00'" in str(err) and "--date-format day-first" in str(err)
    assert err.rows[0] == 1 + 5 * 288 + 1  # header, then 5 days of bars


def test_dates_in_both_orders_in_one_file_are_refused(tmp_path):
    want = make_candles(n=30, freq="1D")
    lines = european_lines(want, "%d.%m.%Y")
    lines[20] = lines[20].replace("20.06.2021", "06.20.2021")
    err = reject(write(tmp_path / "both.csv", lines), "dates in both orders")
    assert "line 21" in str(err) and "one date format per file" in str(err)


def test_a_strftime_date_format_reads_exactly_that(tmp_path):
    want = make_candles()
    compact = headed_lines(want, stamp=lambda ts: ts.strftime("%Y%m%d%H%M"))  # digits only: not epoch seconds
    df, report = load_candles(write(tmp_path / "c.csv", compact), date_format="%Y%m%d%H%M")
    assert_same_candles(df, want)
    assert "as stated" in report.date_reading
    reject(write(tmp_path / "c.csv", compact), "unreadable or out-of-range timestamps")  # without it: refused


@pytest.mark.parametrize("spelling", ["day-first", "DAYFIRST", "dmy", "day_first", " Day-First "])
def test_date_format_spellings(tmp_path, spelling):
    want = make_candles(n=288)
    df, _ = load_candles(write(tmp_path / "d.csv", european_lines(want, "%d.%m.%Y %H:%M")), date_format=spelling)
    assert_same_candles(df, want)


def test_an_unknown_date_format_is_refused_naming_the_allowed_ones(tmp_path):
    from btc_ai.domain.errors import UserInputError

    with pytest.raises(UserInputError) as info:
        load_candles(write(tmp_path / "k.csv", binance_lines(make_candles())), date_format="sideways")
    assert "'sideways'" in str(info.value) and "day-first, month-first, iso" in str(info.value)


def test_separate_date_and_time_columns_day_first(tmp_path):
    want = make_candles(n=600)
    lines = ["Date,Time,Open,High,Low,Close,Volume"]
    for ts, row in zip(want.index, want.itertuples(index=False), strict=True):
        lines.append(",".join([ts.strftime("%d.%m.%Y"), ts.strftime("%H:%M"), *map(str, row)]))
    df, report = load_candles(write(tmp_path / "mt.csv", lines))
    assert_same_candles(df, want)
    assert report.date_reading.startswith("dates read day-first")


def test_a_frame_of_date_strings_is_read_the_same_way():
    want = make_candles(n=2016, start=pd.Timestamp("2021-06-08", tz="UTC"))
    frame = want.reset_index(drop=True).assign(timestamp=want.index.strftime("%d/%m/%Y %H:%M"))
    df, report = load_candles(frame)
    assert_same_candles(df, want)
    assert "day-first" in report.date_reading


# ---------------------------------------------------------------------------------------------------
# Files that are not regular, readable files: one line each, at once (a pipe never blocks)


def test_an_empty_folder_is_refused(tmp_path):
    """A folder is many files now (tests/test_data_files.py); one with none is refused, naming it."""
    err = reject(tmp_path, "holds no candle files")
    assert str(tmp_path) in str(err)


def test_a_named_pipe_without_a_writer_is_refused_at_once(tmp_path):
    import os
    import threading

    pipe = tmp_path / "candles.csv"
    os.mkfifo(pipe)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            load_candles(pipe)
        except DataValidationError as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "load_candles blocked on a named pipe"
    assert "is a named pipe (FIFO), not a data file" in str(outcome[0])


def test_the_message_names_the_file_once(tmp_path):
    path = write(tmp_path / "bad.csv", ["timestamp,open,high,low,close", "x,1,2,0.5,1", "y,1,2,0.5,1"])
    message = str(reject(path))
    assert message.count("bad.csv") == 1


def test_a_utf8_bom_and_utf16_data_file_load(tmp_path):
    want = make_candles()
    text = "\n".join(headed_lines(want)) + "\n"
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    (tmp_path / "u16.csv").write_bytes(text.encode("utf-16"))
    for name in ("bom.csv", "u16.csv"):
        df, _ = load_candles(tmp_path / name)
        assert_same_candles(df, want)


@pytest.mark.slow  # a Python loading the data, as another user
def test_an_unreadable_file_is_one_line_for_an_unprivileged_user(tmp_path):
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    if os.geteuid() != 0:
        path = write(tmp_path / "secret.csv", binance_lines(make_candles()))
        path.chmod(0)
        reject(path, "permission denied")
        return
    if shutil.which("setpriv") is None:
        pytest.skip("root ignores file modes and setpriv (to read as nobody) is not installed")
    work = Path(tempfile.mkdtemp(prefix="btc-ai-perm-"))  # pytest's tmp_path is private to root
    try:
        work.chmod(0o755)
        path = write(work / "secret.csv", binance_lines(make_candles()))
        path.chmod(0)
        script = ("import sys\nfrom btc_ai.domain.data import load_candles\nfrom btc_ai.domain.errors import "
                  "DataValidationError\ntry:\n    load_candles(sys.argv[1])\nexcept DataValidationError as e:\n"
                  "    print(e)\n")
        out = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c",
                              script, str(path)], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, cwd=work)
        assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
        assert "permission denied" in out.stdout and str(path) in out.stdout
    finally:
        shutil.rmtree(work, ignore_errors=True)
