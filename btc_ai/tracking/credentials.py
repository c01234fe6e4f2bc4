"""Credentials of a tracking server, kept out of everything written: a URI's ``user:password@`` moves into
MLflow's own variables (``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``) before anything uses
the URI, and `redact` masks any secret left in a text (a URI's password, the values of the password
variables) wherever a URI, an error or a log line is printed, tagged, journaled or reported. No mlflow.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

USERNAME_VARIABLE, PASSWORD_VARIABLE = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"
# variables whose values are secrets wherever they turn up
SECRET_VARIABLES = (PASSWORD_VARIABLE, "MLFLOW_TRACKING_TOKEN", "PGPASSWORD",
                    "AWS_SECRET_ACCESS_KEY", "AZURE_STORAGE_ACCESS_KEY", "DATABRICKS_TOKEN")
MASK = "***"
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<password>[^@/\s]*)@")
_seen: set[str] = set()  # passwords taken out of URIs by this process (masked even after the URI is gone)


def split_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """``http://user:pw@host:5000/x`` -> (``http://host:5000/x``, ``user``, ``pw``); other URIs unchanged
    (a database URL keeps its password for SQLAlchemy, and `redact` masks it)."""
    if not uri.startswith(("http://", "https://")):
        return uri, None, None
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri, None, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=host)), unquote(user) or None, unquote(password) or None


def adopt_credentials(uri: str) -> str:
    """The URI without its ``user:password@``, which go to MLflow's variables (a URI's login wins over
    the variables: it was given on purpose); the ``MLFLOW_TRACKING_URI`` variable is cleaned too, so no
    library or child process meets the password inside a URI."""
    clean, user, password = split_credentials(uri)
    if user is None and password is None:
        return uri
    if password:
        _seen.add(password)
        os.environ[PASSWORD_VARIABLE] = password
    if user:
        os.environ[USERNAME_VARIABLE] = user
    env_uri = os.environ.get("MLFLOW_TRACKING_URI")
    if env_uri:
        os.environ["MLFLOW_TRACKING_URI"] = split_credentials(env_uri)[0]
    return clean


def _secrets() -> list[str]:
    values = {os.environ.get(name, "") for name in SECRET_VARIABLES} | _seen
    return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)  # a 1-3 char "secret" would mask text


def redact(text: str) -> str:
    """``text`` with every URI's password and every secret variable's value replaced by ``***``."""
    if not text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    for secret in _secrets():
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_value(value: Any) -> Any:
    """`redact` inside strings, lists and dicts (a tracking write's arguments)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    return value


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
           "adopt_credentials", "login_hint", "redact", "redact_logs", "redact_value", "split_credentials"]
