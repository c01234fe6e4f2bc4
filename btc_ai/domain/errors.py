"""The project's own exception types; which of them are recoverable is decided in one place elsewhere
(`btc_ai.recovery.classify`), and every user mistake is a `UserInputError`, mapped once by the face."""

from __future__ import annotations


class BtcAiError(Exception):
    """Base of every error btc_ai raises on purpose.

    ``key`` names the config key at fault when the raiser knows it, so a repair can act on it
    without parsing the message.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class UserInputError(BtcAiError):
    """A mistake of the user's (a bad config, data file, flag, reference, archive, credential): the face
    reports it as one line naming the problem and the fix, with exit code 2, and nothing is created."""


class ConfigValidationError(UserInputError, ValueError):
    """A training config that cannot be used as given; ``problems`` lists every fault at once."""

    def __init__(self, problems: list[ConfigProblem]) -> None:  # noqa: F821 - defined in config
        self.problems = list(problems)
        text = "; ".join(p.describe() for p in self.problems)
        keys = [p.key for p in self.problems if p.key]
        super().__init__(f"invalid config: {text}", key=keys[0] if len(keys) == 1 else None)


class DataValidationError(UserInputError, ValueError):
    """Candle data that cannot be trained on; says which rows and why."""

    def __init__(self, message: str, *, rows: list[int] | None = None, key: str | None = None) -> None:
        super().__init__(message, key=key)
        self.rows = list(rows or [])


class NaNError(BtcAiError, ArithmeticError):
    """Non-finite fitness, parameters or gradients appeared during training."""


class TradingEnvironmentError(BtcAiError, RuntimeError):
    """The trading environment is broken but can be rebuilt.

    The original specification calls this ``EnvironmentError``; in Python 3 that name is an alias of
    ``OSError`` (unrecoverable), so the recoverable kind needs its own type.
    """


class GPUError(BtcAiError, RuntimeError):
    """The accelerator failed (a hardware or driver fault, not a bug in the config)."""


class TrainingStalledError(BtcAiError, RuntimeError):
    """A generation ran past its deadline."""


class ClusterLostError(BtcAiError, RuntimeError):
    """The Ray cluster is gone for this training: every evaluation worker lost (and none rejoined in time),
    or the head unreachable. Recoverable: the training continues on the local evaluator from the last good
    state (the same numbers)."""


class CheckpointError(UserInputError, ValueError):
    """A checkpoint is unreadable, tampered with, or does not match what it claims to hold."""


class ResumeError(UserInputError, ValueError):
    """A resume that cannot go ahead: unknown run or model, a session busy elsewhere, other data."""


class BackupError(UserInputError):
    """A backup or restore that cannot go ahead: bad names, a damaged or unsafe archive, a busy target."""


class StoreError(UserInputError):
    """A tracking store or URI that cannot be used as given: a scheme MLflow does not open (the file store,
    a misspelling), a missing database driver, a local store that is missing where it must exist, cannot be
    read or written, is not a database, or an experiment or run deleted in the UI."""


class CredentialsError(UserInputError):
    """The tracking server refused who we are (wrong or missing credentials, no permission)."""
