"""`python -m edi.cli` runs the `edi` command."""

import sys

from edi.cli import app

sys.exit(app())
