"""`btc-ai data fetch`: Binance's public kline dumps (one zip per month, daily zips for the month under way)
into a folder `--data_path` reads, each verified against its ``.CHECKSUM``; optionally one Parquet file.
Each file's URL and sha256 go into the folder's manifest (``btc_ai-fetch.json``), so a run's dataset inputs
name the URL the data came from (see `btc_ai.domain.data.sources.with_urls`).

What a request is and how it is checked lives here; how one file comes over the wire lives in
`btc_ai.desk.data_download`, and when a failed download is tried again in `btc_ai.recovery.fetch_retry`.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
import urllib.parse
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from btc_ai.desk.data_download import (
    DOWNLOADED,
    RESUMED,
    VERIFIED,
    Downloader,
    FetchError,
    NotPublished,
    Remote,
    _write_atomically,
    sha256_of,
)
from btc_ai.domain.data.sources import FETCH_MANIFEST, read_manifest
from btc_ai.domain.errors import UserInputError

BINANCE_DATA_URL = "https://data.binance.vision"
URL_VARIABLE = "BTC_AI_DATA_URL"
INTERVALS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1mo")
MARKETS = {"spot": "spot", "futures-um": "futures/um"}  # the flag's value -> the folder on the server
_SYMBOL = re.compile(r"[A-Z0-9]{2,30}")
_MONTH = re.compile(r"(\d{4})-(\d{2})")


@dataclass(frozen=True)
class FetchRequest:
    """A checked request: which klines, which months (first days), where from and where to."""

    symbol: str
    interval: str
    first: date
    last: date
    dest: Path
    market: str = "spot"
    base_url: str = BINANCE_DATA_URL
    today: date = field(default_factory=lambda: datetime.now(timezone.utc).date())

    def months(self) -> list[date]:
        months, month = [], self.first
        while month <= self.last:
            months.append(month)
            month = _next_month(month)
        return months

    def remote(self, period: date, *, daily: bool = False) -> Remote:
        frequency = "daily" if daily else "monthly"
        stamp = period.isoformat() if daily else period.strftime("%Y-%m")
        name = f"{self.symbol}-{self.interval}-{stamp}.zip"
        url = (f"{self.base_url}/data/{MARKETS[self.market]}/{frequency}/klines/"
               f"{self.symbol}/{self.interval}/{name}")
        return Remote(name=name, url=url, period=stamp)


@dataclass
class FetchResult:
    """What a fetch left in ``dest``: the files of the request in time order, and how each got there."""

    request: FetchRequest
    files: list[Path] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=lambda: {DOWNLOADED: 0, RESUMED: 0, VERIFIED: 0})
    bytes_received: int = 0
    seconds: float = 0.0


def check_request(symbol: str, interval: str, start: str, end: str, *, dest: str | Path = "data",
                  market: str = "spot", base_url: str | None = None, today: date | None = None) -> FetchRequest:
    """Every argument checked before anything is created or fetched: one `UserInputError` line naming the
    flag and the fix. ``base_url`` None: ``$BTC_AI_DATA_URL``, else Binance's public-data host."""
    today = today or datetime.now(timezone.utc).date()
    clean = symbol.strip().upper()
    if not _SYMBOL.fullmatch(clean):
        raise UserInputError(f"symbol {symbol!r} is not a Binance symbol: letters and digits only, base and quote "
                             "together, e.g. BTCUSDT")
    if interval not in INTERVALS:
        raise UserInputError(f"interval {interval!r} is not one Binance publishes; use one of {', '.join(INTERVALS)}")
    if market not in MARKETS:
        raise UserInputError(f"--market {market!r} is not known; use one of {', '.join(MARKETS)}")
    first, last = _month(start, "--from"), _month(end, "--to")
    if first > last:
        raise UserInputError(f"--from {start} is after --to {end}; give the earlier month first")
    this_month = today.replace(day=1)
    if last > this_month:
        raise UserInputError(f"--to {end} is in the future (this is {this_month:%Y-%m}, UTC); give {this_month:%Y-%m} "
                             "or an earlier month")
    return FetchRequest(symbol=clean, interval=interval, first=first, last=last, dest=Path(dest), market=market,
                        base_url=check_base_url(base_url), today=today)


def check_base_url(base_url: str | None) -> str:
    """The mirror's root: the flag, else ``$BTC_AI_DATA_URL``, else Binance's; an http(s) URL with a host."""
    where = "--base-url" if base_url is not None else URL_VARIABLE
    url = base_url if base_url is not None else os.environ.get(URL_VARIABLE) or BINANCE_DATA_URL
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise UserInputError(f"{where} {url!r} is not an http(s) URL of a mirror's root; give one such as "
                             f"{BINANCE_DATA_URL} (the files are under <URL>/data/spot/monthly/klines/...)")
    return url.strip().rstrip("/")


def fetch_klines(request: FetchRequest, *, say: Callable[[str], None] = print,
                 warn: Callable[[str], None] = print) -> FetchResult:
    """Every month of ``request`` into ``request.dest`` (the month under way as daily files up to yesterday):
    already verified files are kept without a request, a ``.part`` is resumed, each download is verified
    before it takes its final name. ``say`` hears one line per file, ``warn`` each retry. A month the
    mirror does not have, or a file that stays broken, is a `FetchError` (one line) after the files before it
    were kept."""
    started = time.perf_counter()
    result = FetchResult(request)
    with Downloader(request.dest, warn=warn) as downloader:
        for month in request.months():
            remote = request.remote(month)
            try:
                outcome = downloader.fetch(remote)
            except NotPublished:
                if month != request.today.replace(day=1):
                    raise FetchError(_missing_month(request, remote, month)) from None
                _fetch_days(request, downloader, result, month, say)
                continue
            _note(result, outcome, say, remote)
            _drop_covered_days(request, month, say)
        result.bytes_received = downloader.bytes_received
    result.seconds = time.perf_counter() - started
    return result


def _fetch_days(request: FetchRequest, downloader: Downloader, result: FetchResult, month: date,
                say: Callable[[str], None]) -> None:
    """The month under way: Binance publishes each day's file the day after, so up to yesterday; yesterday's
    may still be on its way (skipped with a line), an earlier missing day is the mirror's gap (refused)."""
    days = [month + timedelta(days=k) for k in range((request.today - month).days)]
    if not days:
        say(f"{request.symbol} {request.interval} {month:%Y-%m}: nothing published yet (the month began today)")
    for day in days:
        remote = request.remote(day, daily=True)
        try:
            outcome = downloader.fetch(remote)
        except NotPublished:
            if day == days[-1]:
                say(f"skipped    {remote.name}  (not published yet: Binance adds a day's file the day after)")
                continue
            raise FetchError(f"{remote.name}: the mirror has no file for {day} (HTTP 404 for {remote.url}) though "
                             "later days are due; try again later, or another --base-url") from None
        _note(result, outcome, say, remote)


def _note(result: FetchResult, outcome: tuple[str, Path, str], say: Callable[[str], None], remote: Remote) -> None:
    kind, path, detail = outcome
    result.files.append(path)
    result.outcomes[kind] += 1
    _manifest(path.parent, {path.name: {"url": remote.url, "sha256": sha256_of(path)}})
    say(f"{kind:<10} {path.name}  ({detail})")


def _manifest(dest: Path, changes: dict[str, dict[str, str] | None]) -> None:
    """The folder's fetch manifest (``btc_ai-fetch.json``: each file's URL and sha256, so the loader can name
    where the data came from) with ``changes`` made (None removes a file), rewritten atomically."""
    files = {**read_manifest(dest), **changes}
    text = json.dumps({"files": {k: v for k, v in sorted(files.items()) if v is not None}}, indent=1)
    try:
        _write_atomically(dest / FETCH_MANIFEST, text.encode() + b"\n")
    except OSError as exc:
        raise FetchError(f"{dest / FETCH_MANIFEST}: cannot write the fetch manifest ({exc.strerror or exc}); free "
                         "some space or pass another --dest") from None


def _drop_covered_days(request: FetchRequest, month: date, say: Callable[[str], None]) -> None:
    """Daily files of a month whose monthly file is now here hold the same bars: removed, so the folder
    holds each bar once."""
    pattern = re.compile(re.escape(f"{request.symbol}-{request.interval}-{month:%Y-%m}-") + r"\d{2}\.zip")
    days = sorted(p for p in request.dest.glob(f"{request.symbol}-{request.interval}-{month:%Y-%m}-*.zip")
                  if pattern.fullmatch(p.name))
    for path in days:
        Path(f"{path}.CHECKSUM").unlink(missing_ok=True)
        path.unlink(missing_ok=True)
    if days:
        _manifest(request.dest, dict.fromkeys((p.name for p in days), None))
    if days:
        say(f"removed    {len(days)} daily files of {month:%Y-%m}  (its monthly file covers them)")


def _missing_month(request: FetchRequest, remote: Remote, month: date) -> str:
    listed = f"{request.symbol} {request.interval} on {request.market}"
    hint = ("Binance publishes a month's file in the first days of the next month; try again tomorrow or end "
            f"with --to {_previous_month(month):%Y-%m}" if _next_month(month) == request.today.replace(day=1)
            else f"check the symbol and --market, or start --from a later month (before {month:%Y-%m} {listed} "
                 "may not have been listed)")
    return f"{remote.name}: the mirror has no {month:%Y-%m} for {listed} (HTTP 404 for {remote.url}); {hint}"


def write_parquet(paths: list[Path], target: str | Path) -> tuple[int, str]:
    """The candles of ``paths`` (zips of Binance's layout) as one Parquet file, read by the project's reader
    (so sorted, duplicates dropped, checked as one series); written beside ``target`` and renamed into place.
    Returns the rows and the reader's span line."""
    from btc_ai.domain.data import load_candles

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as tmp:
        joined = Path(tmp) / "joined.csv"
        with joined.open("wb") as out:
            for path in paths:
                out.write(_csv_rows(path))
        frame, report = load_candles(joined)
        partial = Path(tmp) / target.name
        frame.to_parquet(partial)
        os.replace(partial, target)
    return len(frame), f"{report.start:%Y-%m-%d %H:%M} to {report.end:%Y-%m-%d %H:%M} UTC"


def _csv_rows(path: Path) -> bytes:
    """The CSV inside one of Binance's zips, without its header line (futures dumps have one, spot none), so
    the files join into one headerless table of the raw 12-column layout."""
    with zipfile.ZipFile(path) as archive:
        member = next(n for n in archive.namelist() if n.lower().endswith(".csv"))
        raw = archive.read(member)
    if raw[:1] and not raw[:1].isdigit():
        raw = raw.partition(b"\n")[2]
    return raw if raw.endswith(b"\n") or not raw else raw + b"\n"


def _month(text: str, flag: str) -> date:
    found = _MONTH.fullmatch(text.strip())
    if not found or not 1 <= int(found.group(2)) <= 12 or int(found.group(1)) < 1970:
        raise UserInputError(f"{flag} {text!r} is not a month; give it as YYYY-MM, e.g. {flag} 2024-01")
    return date(int(found.group(1)), int(found.group(2)), 1)


def _next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _previous_month(month: date) -> date:
    return (month - timedelta(days=1)).replace(day=1)
