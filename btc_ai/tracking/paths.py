"""Where a store is: the tracking URI in effect, the artifact root of a local SQLite store, and the outage
journal of one store and one user (no mlflow)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path


def default_tracking_uri(root: str | Path = ".") -> str:
    """``sqlite:///<root>/mlruns/mlflow.db``: the project's local store. Creates nothing: the store and its
    folder appear only when a command that writes opens it (`btc_ai.tracking.stores.ensure_store`)."""
    return f"sqlite:///{Path(root).resolve() / 'mlruns' / 'mlflow.db'}"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """An explicit URI, else ``MLFLOW_TRACKING_URI``, else the local store under ``./mlruns``; a server URI's
    ``user:password@`` moves into MLflow's login variables (`btc_ai.tracking.credentials`), so the URI
    everything else sees, prints and stores holds no password."""
    from btc_ai.tracking.credentials import adopt_credentials

    return adopt_credentials(uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri())


def artifact_root(uri: str) -> str | None:
    """Artifacts of a local SQLite store live beside the database, under the same ``mlruns/`` folder."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return None


def _slug(text: str, size: int) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:size].strip("_")


def _journal_base(root: str | Path | None) -> Path:
    """``root``, else ``$BTC_AI_JOURNAL_DIR``, else ``./mlruns/journal``; where this user may not create a
    folder there (a project folder another user made), a folder of this user's own: ~/.local/state, else the
    temporary folder."""
    base = Path(root or os.environ.get("BTC_AI_JOURNAL_DIR") or Path("mlruns") / "journal").resolve()
    existing = base
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        return base
    home = Path.home()
    if home.is_dir() and os.access(home, os.W_OK | os.X_OK):
        return home / ".local" / "state" / "btc-ai" / "journal"
    return Path(tempfile.gettempdir()) / f"btc-ai-{os.getuid()}" / "journal"


def journal_dir(tracking_uri: str, root: str | Path | None = None, *, user: str | None = None) -> Path:
    """The outage journal of one store and one user: ``<base>/<store>-<who>-<hash>`` (base: see
    `_journal_base`). The store is named by its URI without any login (a database URI's password never
    reaches a folder name, nor the hash: a short hash of a weak password is a dictionary look-up away); who
    is the login user (``user``, else the server's username, else a database URI's user) or, for a local
    store, the OS user, and the hash covers the store, the OS user and the login. So two people training
    against one server from one folder never share (or replay) each other's entries, and each folder is
    theirs alone (`private_folder`). A journal an earlier version named by the URI alone, owned by this OS
    user, is taken over (renamed) the first time it is looked for, so writes it still holds are sent."""
    from btc_ai.tracking.credentials import login_user, os_user, strip_login

    base = _journal_base(root)
    clean = strip_login(tracking_uri).split("?", 1)[0].split("#", 1)[0]
    login = user or login_user(tracking_uri)
    me = os_user()
    digest = hashlib.sha256(f"{clean}\n{me}\n{login or ''}".encode()).hexdigest()[:10]
    folder = base / f"{_slug(clean, 60)}-{_slug(login or me, 24)}-{digest}"
    legacy = base / f"{_slug(tracking_uri, 60)}-{hashlib.sha256(tracking_uri.encode()).hexdigest()[:10]}"
    with contextlib.suppress(OSError):  # another process took it over first, or it is not ours: leave it
        if not folder.exists() and legacy.is_dir() and legacy.stat().st_uid == os.getuid():
            legacy.rename(folder)
            folder.chmod(0o700)
    return folder


def private_folder(folder: Path) -> None:
    """Make ``folder`` (a journal) readable by its owner only; its parent, where this process creates it, open
    to every user with the sticky bit (like /tmp), so each user of a shared project folder can add their own
    journal beside the others' and remove none of theirs."""
    parent = folder.parent
    if not parent.exists():
        parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # made by another user meanwhile
            parent.chmod(0o1777)
    folder.mkdir(mode=0o700, exist_ok=True)
    if folder.stat().st_uid == os.getuid():
        folder.chmod(0o700)  # whatever the umask, or an earlier version, made it


__all__ = ["artifact_root", "default_tracking_uri", "journal_dir", "private_folder", "resolve_tracking_uri"]
