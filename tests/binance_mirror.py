"""A Binance public-data mirror on 127.0.0.1 for `btc-ai data fetch` tests and its benchmark: fixture zips of
synthetic candles in Binance's raw 12-column layout, their ``.CHECKSUM`` files, HTTP Range requests, and
faults queued per file (a dropped connection half-way, a stall, a 404, a 503). Nothing leaves the machine."""

from __future__ import annotations

import hashlib
import http.server
import io
import re
import threading
import zipfile
from collections import defaultdict
from pathlib import Path

import pandas as pd
from conftest import write_binance_csv

DROP, STALL, NOT_FOUND, BUSY = "drop", "stall", "404", "503"


def kline_zip(frame: pd.DataFrame, csv_name: str, tmp: Path, *, header: bool = False) -> bytes:
    """A zip like Binance's: one CSV of ``frame`` in the raw kline layout (futures dumps carry a header)."""
    csv = write_binance_csv(tmp / csv_name, frame)
    text = csv.read_bytes()
    if header:
        text = (b"open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
                b"taker_buy_quote_volume,ignore\n") + text
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(csv_name, text)
    csv.unlink()
    return buffer.getvalue()


def checksum_of(data: bytes, name: str) -> bytes:
    return f"{hashlib.sha256(data).hexdigest()}  {name}\n".encode()


def corrupted(data: bytes) -> bytes:
    """The zip with bytes flipped in its compressed data: it still names its member, but fails its CRC."""
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64]) + data[middle + 64:]


class Mirror:
    """``url`` serves ``files`` (path -> bytes); ``faults[path]`` is a queue, one fault per request of that
    path; ``paths`` maps a month or day to its zip's path; ``requests`` lists (path, Range header or None) as they came; ``release`` ends every stall."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.paths: dict[str, str] = {}  # stamp -> the path of the zip published last for it
        self.faults: dict[str, list[str]] = defaultdict(list)
        self.requests: list[tuple[str, str | None]] = []
        self.release = threading.Event()
        self.honour_range = True  # False: a plain static server (`python -m http.server`), the whole file always
        self.stalled = threading.Event()
        self._server = _QuietServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Mirror:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def publish(self, symbol: str, interval: str, stamp: str, data: bytes, *, market: str = "spot",
                checksum: bytes | None = None) -> str:
        """``data`` as ``<SYMBOL>-<INTERVAL>-<stamp>.zip`` (a month YYYY-MM or a day YYYY-MM-DD) and its checksum
        file (``checksum``, else the true one); returns the zip's path on the server."""
        frequency = "daily" if len(stamp) == 10 else "monthly"
        folder = {"spot": "spot", "futures-um": "futures/um"}[market]
        name = f"{symbol}-{interval}-{stamp}.zip"
        path = f"/data/{folder}/{frequency}/klines/{symbol}/{interval}/{name}"
        self.files[path] = data
        self.paths[stamp] = path
        self.files[f"{path}.CHECKSUM"] = checksum if checksum is not None else checksum_of(data, name)
        return path

    def zip_gets(self, path: str) -> list[str | None]:
        """The Range header of each request of the zip at ``path`` (None: the whole file)."""
        return [rng for p, rng in self.requests if p == path]


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hung up mid-answer (a killed fetch, a refused write) is what the tests do


def _handler(mirror: Mirror) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path
            mirror.requests.append((path, self.headers.get("Range")))
            fault = mirror.faults[path].pop(0) if mirror.faults.get(path) else None
            data = mirror.files.get(path)
            if fault == NOT_FOUND or data is None:
                return self._plain(404, b"<Error><Code>NoSuchKey</Code></Error>")
            if fault == BUSY:
                return self._plain(503, b"Slow Down")
            start = 0
            found = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "") if mirror.honour_range else None
            if found:
                start = int(found.group(1))
                if start >= len(data):
                    return self._plain(416, b"")
            body = data[start:]
            self.send_response(206 if found else 200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            if found:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if fault in (DROP, STALL):
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                if fault == STALL:  # the client holds half the file until the test kills it
                    mirror.stalled.set()
                    mirror.release.wait(60)
                self.close_connection = True
                return None
            self.wfile.write(body)
            return None

        def _plain(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
