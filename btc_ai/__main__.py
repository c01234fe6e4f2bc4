"""`python -m btc_ai` runs the CLI."""

import sys

from .cli import main

sys.exit(main())
