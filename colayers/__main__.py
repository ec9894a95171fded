"""``python -m colayers``: the same command line as the ``colayers`` console script."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
