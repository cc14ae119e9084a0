"""``python -m sam_widget ...`` runs the ``sam-widget`` command line."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
