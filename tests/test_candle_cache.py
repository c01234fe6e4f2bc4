"""The Parquet cache of parsed candles (`btc_ai.domain.data.cache`): a cached load is the uncached load
exactly (frame, report, fingerprint), a changed byte or option misses, a damaged entry is passed over and
written again, the switch turns it off, an unwritable folder is no error, and the folder stays bounded."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_binance_csv
from test_data_files import binance_zip, three_months

from btc_ai.domain.cache_dir import DIR_VARIABLE
from btc_ai.domain.data import cache, data_fingerprint, load_candles, loading
from btc_ai.domain.data.cache import SWITCH_VARIABLE
from btc_ai.domain.data.quality import OUTLIER_VARIABLE


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The cache's folder, under tmp_path, caching sources of any size."""
    monkeypatch.setenv(DIR_VARIABLE, str(tmp_path / "cache"))
    monkeypatch.delenv(SWITCH_VARIABLE, raising=False)
    monkeypatch.setenv(OUTLIER_VARIABLE, "repair")
    monkeypatch.setattr(cache, "MIN_BYTES", 0)
    return tmp_path / "cache" / "candles"


def _uncached(source: object, monkeypatch: pytest.MonkeyPatch, **options: object) -> tuple[pd.DataFrame, object]:
    with monkeypatch.context() as m:
        m.setenv(SWITCH_VARIABLE, "off")
        return load_candles(source, **options)


def _no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here a load that parses fails: what comes back came from the cache."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed although cached")

    monkeypatch.setattr(loading, "_build", refuse)
    monkeypatch.setattr(loading, "load_many", refuse)


def _assert_equal(got: tuple[pd.DataFrame, object], want: tuple[pd.DataFrame, object]) -> None:
    pd.testing.assert_frame_equal(got[0], want[0], check_exact=True, check_freq=True)
    assert got[1] == want[1]
    assert got[1].to_dict() == want[1].to_dict()
    assert data_fingerprint(got[0]) == data_fingerprint(want[0])


def test_a_cached_folder_load_is_the_uncached_load_exactly(folder: Path, tmp_path: Path, candles: pd.DataFrame,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    three_months(tmp_path / "zips", candles.iloc[:2000])
    want = _uncached(tmp_path / "zips", monkeypatch)
    _assert_equal(load_candles(tmp_path / "zips"), want)  # the miss, which writes the entry
    assert len(list(folder.glob("*.parquet"))) == 1
    _no_parsing(monkeypatch)
    got = load_candles(tmp_path / "zips")
    _assert_equal(got, want)
    assert [f.sha256 for f in got[1].files] == [f.sha256 for f in want[1].files] and len(got[1].files) == 3


def test_one_changed_file_misses_the_cache(folder: Path, tmp_path: Path, candles: pd.DataFrame,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    paths = three_months(tmp_path / "zips", candles.iloc[:2000])
    before = load_candles(tmp_path / "zips")
    changed = candles.iloc[1334:2000].copy()  # the third month's rows
    changed.iloc[5, changed.columns.get_loc("close")] *= 1.001
    binance_zip(tmp_path / "zips", paths[2].stem, changed)
    got = load_candles(tmp_path / "zips")
    _assert_equal(got, _uncached(tmp_path / "zips", monkeypatch))
    assert data_fingerprint(got[0]) != data_fingerprint(before[0])
    assert got[1].files[2].sha256 != before[1].files[2].sha256
    assert len(list(folder.glob("*.parquet"))) == 2


def test_an_option_that_changes_the_parse_misses(folder: Path, tmp_path: Path, candles: pd.DataFrame,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data = candles.iloc[:500].copy()
    for column in ("open", "high"):  # an outlier bar: repaired or kept, by the option
        data.iloc[100, data.columns.get_loc(column)] *= 4
    path = write_binance_csv(tmp_path / "candles.csv", data)
    repaired = load_candles(path)
    kept = load_candles(path, outlier_bars="keep")
    assert repaired[1].outlier_action == "repaired" and kept[1].outlier_action == "kept"
    _assert_equal(kept, _uncached(path, monkeypatch, outlier_bars="keep"))
    assert len(list(folder.glob("*.parquet"))) == 2


@pytest.mark.parametrize("damage", [b"", b"PAR1 not parquet at all", "other-candles"])
def test_a_damaged_entry_is_passed_over_and_written_again(folder: Path, tmp_path: Path, candles: pd.DataFrame,
                                                          monkeypatch: pytest.MonkeyPatch, damage: object) -> None:
    path = write_binance_csv(tmp_path / "candles.csv", candles.iloc[:500])
    want = load_candles(path)
    (entry,) = folder.glob("*.parquet")
    if damage == "other-candles":  # a readable entry whose candles are not the ones it was written with
        other = tmp_path / "other.csv"
        write_binance_csv(other, candles.iloc[500:1000])
        load_candles(other)
        (newer,) = set(folder.glob("*.parquet")) - {entry}
        entry.write_bytes(newer.read_bytes())
    else:
        entry.write_bytes(damage)
    _assert_equal(load_candles(path), want)
    _no_parsing(monkeypatch)  # rewritten: the next load is a hit
    _assert_equal(load_candles(path), want)


def test_the_switch_turns_it_off_and_an_unwritable_folder_is_no_error(folder: Path, tmp_path: Path,
                                                                      candles: pd.DataFrame,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_binance_csv(tmp_path / "candles.csv", candles.iloc[:500])
    want = _uncached(path, monkeypatch)
    assert not folder.exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(DIR_VARIABLE, str(blocker))
    _assert_equal(load_candles(path), want)


def test_small_and_parquet_sources_are_not_cached(folder: Path, tmp_path: Path, candles: pd.DataFrame,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    parquet = tmp_path / "candles.parquet"
    candles.iloc[:500].reset_index().to_parquet(parquet, index=False)
    load_candles(parquet)
    monkeypatch.setattr(cache, "MIN_BYTES", 1 << 30)
    load_candles(write_binance_csv(tmp_path / "candles.csv", candles.iloc[:500]))
    assert not folder.exists() or not list(folder.glob("*.parquet"))


def test_the_folder_is_bounded_least_recently_used_first(folder: Path, tmp_path: Path, candles: pd.DataFrame,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    paths = [write_binance_csv(tmp_path / f"c{k}.csv", candles.iloc[k * 300:(k + 1) * 300]) for k in range(3)]
    load_candles(paths[0])
    (first,) = folder.glob("*.parquet")
    monkeypatch.setattr(cache, "MAX_BYTES", int(first.stat().st_size * 2.5))  # room for two entries
    stale, fresh = folder / ".old.1.2.tmp", folder / ".new.1.2.tmp"  # a killed writer's, and a live one's
    for path in (stale, fresh):
        path.write_bytes(b"half an entry")
    os.utime(stale, (0, 0))
    for path in paths[1:]:
        load_candles(path)
    assert not first.exists() and len(list(folder.glob("*.parquet"))) == 2
    assert not stale.exists() and fresh.exists()
