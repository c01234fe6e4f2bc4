"""The journal's records on disk: one line each, whole or detectably damaged.

A record is ``J <crc32> <seq> <length> <payload>\\n``: the crc32 (8 hex digits) covers everything after it,
the length counts the payload's bytes and the payload is the JSON ``{"op": ..., "args": ...}`` (ASCII, so
never a newline inside). Lines of plain JSON ``{"seq": n, "op": ..., "args": ...}`` without a checksum, as
the previous version wrote them, are still read. A line of spaces is a damaged record already set aside
(see `Journal`); it says nothing, like an empty line.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from typing import Any

MAGIC = b"J "
_HEADER = re.compile(rb"J ([0-9a-f]{8}) ((\d{1,19}) (\d{1,19}) )")  # crc, then what it covers


class Damaged(ValueError):
    """A line that is no whole record: cut off, garbage, a checksum that does not match, bad JSON."""


def encode(seq: int, op: str, args: dict[str, Any]) -> bytes:
    payload = json.dumps({"op": op, "args": args}, separators=(",", ":")).encode("ascii")
    body = b"%d %d " % (seq, len(payload)) + payload
    return MAGIC + b"%08x " % zlib.crc32(body) + body + b"\n"


def parse(line: bytes, *, full: bool = True) -> tuple[int, str, dict[str, Any]] | None:
    """``(seq, op, args)`` of one line read with its newline; None for a line that says nothing (empty, or
    spaces: set aside earlier). Without ``full`` a checksummed record's payload is not decoded (op and args
    come back empty): enough to count or number records. Raises `Damaged`."""
    if not line.endswith(b"\n"):
        raise Damaged("cut off: no end of line (a process killed or a disk filled mid-append)")
    if not line.strip(b" \n"):
        return None
    if line.startswith(b"{"):
        return _legacy(line)
    header = _HEADER.match(line)
    if header is None:
        raise Damaged("not a journal record")
    body = line[header.start(2) : -1]
    if zlib.crc32(body) != int(header.group(1), 16):
        raise Damaged("checksum mismatch")
    seq, length = int(header.group(3)), int(header.group(4))
    payload = line[header.end() : -1]
    if len(payload) != length or seq < 1:
        raise Damaged("length mismatch")
    if not full:
        return seq, "", {}
    try:
        raw = json.loads(payload)
    except ValueError:
        raise Damaged("bad JSON") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("op"), str) or not isinstance(raw.get("args"), dict):
        raise Damaged("not an operation")
    return seq, raw["op"], raw["args"]


def _legacy(line: bytes) -> tuple[int, str, dict[str, Any]]:
    try:
        raw = json.loads(line)
    except ValueError:
        raise Damaged("bad JSON") from None
    seq = raw.get("seq") if isinstance(raw, dict) else None
    if type(seq) is not int or seq < 1 or not isinstance(raw.get("op"), str) or not isinstance(raw.get("args"), dict):
        raise Damaged("not an operation")
    return seq, raw["op"], raw["args"]


def tail(fd: int, size: int) -> tuple[int, bool]:
    """The number of the last whole record in the first ``size`` bytes of ``fd`` (0: none) and whether those
    bytes end with a newline. Reads backwards from the end, so the cost is that of the last record, not of
    the file (damaged lines at the end are stepped over)."""
    window = 16384
    while True:
        low = max(size - window, 0)
        data = os.pread(fd, size - low, low)
        lines = data.split(b"\n")[:-1]  # the piece after the last newline is empty or a torn tail
        if low > 0:
            lines = lines[1:]  # may begin mid-line
        for line in reversed(lines):
            try:
                found = parse(line + b"\n", full=False)
            except Damaged:
                continue
            if found is not None:
                return found[0], data.endswith(b"\n")
        if low == 0:
            return 0, size == 0 or data.endswith(b"\n")
        window *= 4


# -- the replay mark: which entry was sent last, and the byte just after it ----------------------------------
#
# Written after every entry sent, so it must cost little: two 64-byte slots, written in turn in place (no
# fsync, no rename: a rename over a file syncs it on ext4, a millisecond each), each with a checksum. A
# write torn by a power cut, or read half-way by another process, fails its checksum and the other slot,
# one entry older, is used: that entry is sent again, which every operation allows.

SLOT = 64


def _slot(line: bytes) -> tuple[int, int, int | None] | None:
    """(write number, entry number, byte offset or None) of a slot whose checksum holds, else None."""
    text, _, crc = line.rstrip(b" \n\x00").rpartition(b" ")
    words = text.split(b" ")
    if len(words) != 3 or not re.fullmatch(rb"[0-9a-f]{8}", crc) or zlib.crc32(text) != int(crc, 16):
        return None
    try:
        return int(words[0]), int(words[1]), None if words[2] == b"-" else int(words[2])
    except ValueError:
        return None


def read_mark(data: bytes) -> tuple[int, int, int | None]:
    """(write number, last entry sent, byte after it or None) from a mark file's bytes; the previous
    version's mark is a plain number. Raises ValueError when nothing in it can be read."""
    slots = [found for k in range(0, len(data), SLOT) if (found := _slot(data[k : k + SLOT]))]
    if slots:
        return max(slots)
    if not data.strip():
        return 0, 0, None
    return 0, int(data), None


def write_mark(fd: int, number: int, seq: int, offset: int | None) -> None:
    text = b"%d %d %s" % (number, seq, b"-" if offset is None else b"%d" % offset)
    line = (text + b" %08x" % zlib.crc32(text)).ljust(SLOT - 1) + b"\n"
    os.pwrite(fd, line, SLOT * (number % 2))
