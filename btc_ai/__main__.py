"""`python -m btc_ai` runs the CLI."""

import sys

from btc_ai.cli import console

sys.exit(console())
