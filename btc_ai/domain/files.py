"""Reading a file a user named (a data file, a config file): only a regular file, read at once, and every
way that can fail but a missing file as one line naming the file and the fix.

A named pipe with no writer would block a plain ``open()`` forever, so the file is opened without
blocking and checked (``fstat``) before a byte is read; a folder, a socket or a device is refused the
same way. A missing file stays ``FileNotFoundError``: callers say which flag named it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from btc_ai.domain.errors import UserInputError

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def read_regular_file(path: str | Path, what: str, error: type[UserInputError] = UserInputError) -> bytes:
    """The bytes of the regular file ``path``; ``error(one line)`` for anything but a missing file."""
    path = Path(path)
    try:
        _refuse_unless_regular(os.stat(path).st_mode, path, what, error)  # before open: a socket cannot be opened
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except PermissionError:
        raise error(f"{path}: permission denied, this user may not read the {what}; make it readable "
                    f"(chmod u+r, or the folders above it u+x) or run as a user who may read it") from None
    except NotADirectoryError:
        raise error(f"{path}: no such {what} (a part of the path is a file, not a folder); check the path") from None
    except OSError as exc:
        raise error(f"{path}: cannot open the {what} ({exc.strerror or exc}); check the path") from None
    try:
        _refuse_unless_regular(os.fstat(fd).st_mode, path, what, error)  # it may have been swapped meanwhile
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or exc}); check the file") from None
    finally:
        os.close(fd)


def _refuse_unless_regular(mode: int, path: Path, what: str, error: type[UserInputError]) -> None:
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    fix = "give the file itself" if stat.S_ISDIR(mode) else "save its contents to a regular file and give that"
    raise error(f"{path} is {kind}, not a {what}; {fix}")
