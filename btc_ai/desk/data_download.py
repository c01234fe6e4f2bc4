"""One published file over the wire: its ``.CHECKSUM`` first, then the zip into ``<name>.part`` (resumed with
an HTTP Range request where a part is left), verified (sha256 and the zip itself) before ``os.replace`` gives
it its final name; the checksum file is written beside it last. Nothing half-written ever carries a final
name. Transient failures are retried by `btc_ai.recovery.fetch_retry`'s policy.
"""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import urllib3

from btc_ai.domain.errors import UserInputError
from btc_ai.recovery.fetch_retry import (
    ATTEMPTS,
    DamagedDownload,
    DownloadCutShort,
    ServerBusy,
    download_retrying,
)

DOWNLOADED, RESUMED, VERIFIED = "downloaded", "resumed", "verified"
TIMEOUT = (10.0, 60.0)  # seconds to connect, and between two reads of the body
_CHUNK = 1 << 16
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class FetchError(UserInputError):
    """A fetch that cannot finish: a month the mirror lacks, a file that stays damaged, a mirror that keeps
    failing. One line naming the file and what to do; the files verified before it stay."""


class NotPublished(Exception):
    """The mirror answered 404 (or 403, as S3 does for a missing key) for this file."""


@dataclass(frozen=True)
class Remote:
    """One published zip: its file name, its URL (the checksum is ``<url>.CHECKSUM``) and its month or day."""

    name: str
    url: str
    period: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def verified_here(path: Path) -> bool:
    """``path`` and its ``.CHECKSUM`` are here and agree: kept without asking the mirror."""
    try:
        expected = _parse_checksum(Path(f"{path}.CHECKSUM").read_bytes(), path.name)
        return path.is_file() and sha256_of(path) == expected
    except (OSError, DamagedDownload):
        return False


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class Downloader:
    """Downloads into ``dest`` over one HTTP session; ``warn`` hears of each retry."""

    def __init__(self, dest: Path, *, warn: Callable[[str], None] = print, attempts: int = ATTEMPTS) -> None:
        self.dest = Path(dest)
        self.warn = warn
        self.attempts = attempts
        self.bytes_received = 0
        self.session = requests.Session()
        from btc_ai import __version__

        self.session.headers["User-Agent"] = f"btc-ai/{__version__} (data fetch)"

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()

    def fetch(self, remote: Remote) -> tuple[str, Path, str]:
        """``remote`` into ``dest``: (how: downloaded/resumed/verified, the final path, a detail for people).
        `NotPublished` for a 404; `FetchError` once the retry policy gives up."""
        final = self.dest / remote.name
        if verified_here(final):
            return VERIFIED, final, "already here, sha256 matches its .CHECKSUM"
        retrying = download_retrying(lambda state: self._retrying(remote, state), attempts=self.attempts)
        try:
            return retrying(self._fetch_once, remote, final)
        except (requests.RequestException, ServerBusy, DownloadCutShort, DamagedDownload) as exc:
            raise FetchError(self._gave_up(remote, final, exc)) from None
        except OSError as exc:  # after the network's errors (requests' are OSErrors too): the disk's
            raise FetchError(f"{remote.name}: cannot write into {self.dest} ({exc.strerror or exc}); free some "
                             "space or pass another --dest") from None

    def _fetch_once(self, remote: Remote, final: Path) -> tuple[str, Path, str]:
        checksum_text = self._get_small(f"{remote.url}.CHECKSUM")
        expected = _parse_checksum(checksum_text, remote.name)
        if final.is_file() and sha256_of(final) == expected:  # here before, its checksum file lost
            _write_atomically(Path(f"{final}.CHECKSUM"), checksum_text)
            return VERIFIED, final, "already here, sha256 matches the mirror's .CHECKSUM"
        part = self.dest / f"{remote.name}.part"
        offset = part.stat().st_size if part.is_file() else 0
        resumed_from = self._download(remote, part, offset)
        try:
            _verify(part, expected)
        except DamagedDownload:
            part.unlink(missing_ok=True)  # a damaged copy is never resumed: the retry starts from zero
            raise
        _fsync(part)
        os.replace(part, final)
        _write_atomically(Path(f"{final}.CHECKSUM"), checksum_text)
        _fsync_folder(self.dest)
        size = _size(final.stat().st_size)
        if resumed_from:
            return RESUMED, final, f"from {_size(resumed_from)} of {size}, sha256 verified"
        return DOWNLOADED, final, f"{size}, sha256 verified"

    def _get_small(self, url: str) -> bytes:
        with self.session.get(url, timeout=TIMEOUT) as response:
            self._check_status(response, url)
            return response.content

    def _check_status(self, response: requests.Response, url: str) -> None:
        status = response.status_code
        if status in (403, 404):
            raise NotPublished(url)
        if status == 429 or status >= 500:
            raise ServerBusy(url, status)
        if status >= 400:
            raise FetchError(f"{url} answered HTTP {status} {response.reason}; check --base-url / $BTC_AI_DATA_URL")

    def _download(self, remote: Remote, part: Path, offset: int) -> int:
        """The body into ``part`` from ``offset`` (a Range request); the offset the server honoured (0 when it
        sent the whole file). The bytes so far stay in ``part`` when the connection drops."""
        # identity: the bytes as published (a compressed transfer could neither be resumed nor checksummed)
        headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={offset}-"} if offset else {})}
        with self.session.get(remote.url, headers=headers, stream=True, timeout=TIMEOUT) as response:
            if response.status_code == 416 and offset:  # nothing after offset: the part may be whole already
                return offset
            self._check_status(response, remote.url)
            start = _range_start(response) if response.status_code == 206 else 0
            if start != offset and start != 0:  # a range we did not ask for: start over rather than splice
                part.unlink(missing_ok=True)
                raise DownloadCutShort(f"the mirror sent bytes from {start}, not {offset}")
            self.dest.mkdir(parents=True, exist_ok=True)
            expected = _announced_length(response)
            received = 0
            cut = None
            with part.open("ab" if start else "wb") as out:
                try:  # read1: what has arrived, so the bytes before a drop reach the part (a read of a fixed
                    # size loses its last, partial block with the error)
                    while block := response.raw.read1(_CHUNK, decode_content=False):
                        out.write(block)
                        received += len(block)
                        self.bytes_received += len(block)
                except urllib3.exceptions.ReadTimeoutError:
                    cut = f"no byte for {TIMEOUT[1]:.0f} s"
                except urllib3.exceptions.ProtocolError:
                    cut = "the connection ended"
            if cut or (expected is not None and received < expected):
                total = f" of {_size(start + expected)}" if expected is not None else ""
                raise DownloadCutShort(f"{cut or 'the connection ended'} at {_size(start + received)}{total}")
        return start

    def _retrying(self, remote: Remote, state: Any) -> None:  # a tenacity RetryCallState
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        self.warn(f"{remote.name}: {_describe(error)}; trying again (attempt {state.attempt_number + 1} of "
                  f"{self.attempts}) in {wait:.0f} s")

    def _gave_up(self, remote: Remote, final: Path, error: BaseException) -> str:
        part = self.dest / f"{remote.name}.part"
        if isinstance(error, DamagedDownload):
            return (f"{remote.name}: {error}, again when downloaded once more; the damaged copy was removed and "
                    f"nothing is kept under {final}; the mirror serves a damaged file: try again later, or "
                    "another --base-url")
        kept = (f"; the {_size(part.stat().st_size)} received are kept in {part} and the next fetch resumes "
                "from there" if part.is_file() and part.stat().st_size else "")
        return (f"{remote.name}: {_describe(error)} on each of {self.attempts} attempts{kept}; check the network "
                "or the mirror and run the fetch again")


def _describe(error: BaseException | None) -> str:
    if isinstance(error, (DownloadCutShort, requests.exceptions.ChunkedEncodingError)):
        return f"the connection dropped mid-file ({error})"
    if isinstance(error, requests.Timeout):
        return "the mirror did not answer in time"
    if isinstance(error, requests.ConnectionError):
        return "the mirror cannot be reached (connection refused or dropped)"
    return str(error)


def _parse_checksum(text: bytes, name: str) -> str:
    """``<sha256>  <file name>`` (the name may be left out); a damaged checksum file is a damaged download."""
    fields = text.decode("utf-8", "replace").split()
    if not fields or not _SHA256.fullmatch(fields[0]):
        raise DamagedDownload(f"its .CHECKSUM holds no sha256 ({text[:40]!r})")
    if len(fields) > 1 and fields[1].lstrip("*") != name:
        raise DamagedDownload(f"its .CHECKSUM names {fields[1]!r}, not {name!r}")
    return fields[0].lower()


def _verify(part: Path, expected: str) -> None:
    actual = sha256_of(part)
    if actual != expected:
        raise DamagedDownload(f"sha256 {actual[:12]}... is not the .CHECKSUM's {expected[:12]}...")
    try:  # a checksum computed over a bad file still names a bad file
        with zipfile.ZipFile(part) as archive:
            bad = archive.testzip()
            members = [n for n in archive.namelist() if n.lower().endswith(".csv")]
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DamagedDownload(f"not a readable zip ({exc})") from None
    if bad is not None or len(members) != 1:
        raise DamagedDownload(f"a damaged zip (member {bad!r} fails its CRC)" if bad is not None
                              else f"a zip holding {len(members)} CSV files, not one")


def _range_start(response: requests.Response) -> int:
    found = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(found.group(1)) if found else -1


def _announced_length(response: requests.Response) -> int | None:
    try:
        return int(response.headers["Content-Length"])
    except (KeyError, ValueError):
        return None


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(f"{path.name}.part")
    with partial.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)


def _fsync(path: Path) -> None:
    with path.open("rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_folder(folder: Path) -> None:
    fd: Any = None
    try:
        fd = os.open(folder, os.O_RDONLY)
        os.fsync(fd)
    except OSError:
        pass  # not every filesystem syncs a folder; the rename itself is atomic
    finally:
        if fd is not None:
            os.close(fd)
