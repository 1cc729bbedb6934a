"""`python -m examples.horse_or_human`: runs the comparison (see `command`)."""

import sys

from .command import main

if __name__ == "__main__":
    sys.exit(main())
