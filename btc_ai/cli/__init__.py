"""The face: `btc-ai`, one module per command group, and the progress display.

May import every floor below it, each command only what it needs (so `btc-ai --help` stays fast).
"""

from btc_ai.cli.config_flags import config_from_args
from btc_ai.cli.main import build_parser, console, main
from btc_ai.cli.progress import ConsoleReporter

__all__ = ["ConsoleReporter", "build_parser", "config_from_args", "console", "main"]
