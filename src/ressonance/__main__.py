"""``python -m ressonance``."""

from __future__ import annotations

import sys

from ressonance.cli import main

if __name__ == "__main__":
    sys.exit(main())
