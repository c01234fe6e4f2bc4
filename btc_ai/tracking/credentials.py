"""Credentials of a tracking server, kept out of everything written: a URI's ``user:password@`` moves into
MLflow's own variables (``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``) before anything uses
the URI. `redact` masks what could still carry a secret, but only in text for people (console and log
lines, error reports, run descriptions): data in flight (run IDs, tag keys, params, metric names, paths,
shas) is never passed through it, so no password can rewrite it. No mlflow.
"""

from __future__ import annotations

import base64
import logging
import os
import re
from urllib.parse import unquote, urlsplit, urlunsplit

USERNAME_VARIABLE, PASSWORD_VARIABLE = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"
# variables whose values are secrets wherever they turn up
SECRET_VARIABLES = (PASSWORD_VARIABLE, "MLFLOW_TRACKING_TOKEN", "PGPASSWORD",
                    "AWS_SECRET_ACCESS_KEY", "AZURE_STORAGE_ACCESS_KEY", "DATABRICKS_TOKEN")
MASK = "***"
# a URI's authority: the login is everything before its LAST "@" (a password may hold an "@" itself)
_AUTHORITY = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<authority>[^/?#\s]*)")
# a secret given by name: password=..., "PGPASSWORD": "...", token: ..., Authorization: Basic ...; the name
# must end with the secret word, so a file called secret.csv or a word like "tokens:" is not taken for one
_NAMED = re.compile(r"(?i)(?P<key>\b[A-Za-z0-9_-]*(?:password|passwd|pwd|token|secret|api[_-]?key|access[_-]?key)"
                    r"[\"']?\s*[=:]\s*[\"']?)(?P<value>[^\s\"',;&)}\]]+)")
_AUTH_HEADER = re.compile(r"(?i)\b(?P<key>(?:basic|bearer)\s+)(?P<value>[A-Za-z0-9+/=._~-]{8,})")
_seen: set[str] = set()  # passwords taken out of URIs by this process (masked even after the URI is gone)


def _split_authority(authority: str) -> tuple[str | None, str | None, str]:
    """``user:pw@host`` -> (user, pw, host), splitting at the LAST "@"; (None, None, host) without a login."""
    if "@" not in authority:
        return None, None, authority
    userinfo, _, host = authority.rpartition("@")
    user, sep, password = userinfo.partition(":")
    return user, (password if sep else None), host


def split_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """``http://user:pw@host:5000/x`` -> (``http://host:5000/x``, ``user``, ``pw``); other URIs unchanged
    (a database URL keeps its password for SQLAlchemy: `strip_login` is its form for people and names)."""
    if not uri.startswith(("http://", "https://")):
        return uri, None, None
    parts = urlsplit(uri)
    user, password, host = _split_authority(parts.netloc)
    if user is None:
        return uri, None, None
    return urlunsplit(parts._replace(netloc=host)), unquote(user) or None, unquote(password or "") or None


def strip_login(uri: str) -> str:
    """``uri`` without any ``user:password@`` (any scheme): what names a store in a folder name or a hash."""
    return _AUTHORITY.sub(lambda m: m["scheme"] + _split_authority(m["authority"])[2], uri, count=1)


def login_user(uri: str) -> str | None:
    """Who ``uri`` logs in as: a server's ``MLFLOW_TRACKING_USERNAME`` (a URI's login has moved there), a
    database URI's user; None for a local store."""
    match = _AUTHORITY.match(uri)
    if match is None:
        return None
    user = _split_authority(match["authority"])[0]
    if user:
        return unquote(user)
    if uri.startswith(("http://", "https://")):
        return os.environ.get(USERNAME_VARIABLE) or None
    return None


def os_user() -> str:
    """This process's OS user, by its uid (not $USER/$LOGNAME, which `sudo -E` carries over): its name, else
    the uid."""
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def adopt_credentials(uri: str) -> str:
    """The URI without its ``user:password@``, which go to MLflow's variables (a URI's login wins over
    the variables: it was given on purpose). A ``MLFLOW_TRACKING_URI`` variable holding a login is cleaned
    whichever URI is used, so no library or child process meets the password inside it; its login is
    adopted only for the same server."""
    clean, user, password = split_credentials(uri)
    env_uri = os.environ.get("MLFLOW_TRACKING_URI")
    if env_uri:
        env_clean, env_user, env_password = split_credentials(env_uri)
        if env_user is not None or env_password is not None:
            os.environ["MLFLOW_TRACKING_URI"] = env_clean
            if env_clean == clean and user is None and password is None:
                user, password = env_user, env_password
    if password:
        _seen.add(password)
        os.environ[PASSWORD_VARIABLE] = password
    if user:
        os.environ[USERNAME_VARIABLE] = user
    return clean


def _secrets() -> list[str]:
    """Secret values masked wherever they appear in a text for people: only distinctive ones (8 characters
    or more, or holding a character other than a letter or digit). A short plain word or number (``5000``,
    ``admin``, ``mlflow``) is not masked on its own: in prose it is far likelier to be a port, a user name
    or the word itself than an echo of the password, and masking it would falsify what a person reads (a
    port shown as ***). Where a password really is echoed — inside a URI's login, after a secret's name
    (``password=``, ``PGPASSWORD:``), as an Authorization header — the forms in `redact` catch it, whatever
    its length."""
    values = {os.environ.get(name, "") for name in SECRET_VARIABLES} | _seen
    user, password = os.environ.get(USERNAME_VARIABLE), os.environ.get(PASSWORD_VARIABLE)
    if user and password:  # the Basic token a request carries
        values.add(base64.b64encode(f"{user}:{password}".encode()).decode())
    distinct = (v for v in values if len(v) >= 4 and (len(v) >= 8 or not v.isalnum()))
    return sorted(distinct, key=len, reverse=True)


def _mask_login(match: re.Match[str]) -> str:
    user, password, host = _split_authority(match["authority"])
    if password is None:
        return match[0]
    return f"{match['scheme']}{user}:{MASK}@{host}"


def redact(text: str) -> str:
    """``text`` for people with every URI's password, every named secret (``password=...``, an
    Authorization header) and every distinctive secret value (see `_secrets`) replaced by ``***``.
    Never for data: a run ID, tag, param, metric name or path is written as it is."""
    if not text:
        return text
    text = _AUTHORITY.sub(_mask_login, text)
    text = _NAMED.sub(lambda m: m["key"] + MASK, text)
    text = _AUTH_HEADER.sub(lambda m: m["key"] + MASK, text)
    for secret in _secrets():
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def display_uri(uri: str) -> str:
    """A URI as it may be shown: its password masked, the rest as it is."""
    return _AUTHORITY.sub(_mask_login, uri, count=1)


class RedactingFilter(logging.Filter):
    """A log filter that redacts each record's message (its arguments merged in first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def redact_logs() -> None:
    """No password in a log line: every handler of the root logger and of MLflow's masks secrets."""
    for logger in (logging.getLogger(), logging.getLogger("mlflow"), logging.getLogger("btc_ai")):
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())


def login_hint(uri: str) -> str:
    """Who we are to ``uri`` and what to set, for the one line of a refused login."""
    user = os.environ.get(USERNAME_VARIABLE)
    has_password = bool(os.environ.get(PASSWORD_VARIABLE))
    if not user and not has_password:
        return (f"it requires a login and none is set; set {USERNAME_VARIABLE} and {PASSWORD_VARIABLE} (or put "
                f"user:password@ in the URI)")
    if not user or not has_password:
        missing = PASSWORD_VARIABLE if user else USERNAME_VARIABLE
        return f"the login is incomplete ({missing} is not set); set both {USERNAME_VARIABLE} and {PASSWORD_VARIABLE}"
    return (f"it refused the login of user {user!r} (wrong password, or no such user); check {USERNAME_VARIABLE} "
            f"and {PASSWORD_VARIABLE}, or ask the server's admin")


__all__ = ["MASK", "PASSWORD_VARIABLE", "SECRET_VARIABLES", "USERNAME_VARIABLE", "RedactingFilter",
           "adopt_credentials", "display_uri", "login_hint", "login_user", "os_user", "redact", "redact_logs",
           "split_credentials", "strip_login"]
