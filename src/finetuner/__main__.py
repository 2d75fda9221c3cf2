"""``python -m finetuner`` runs the command-line interface."""

import sys

from finetuner.cli import main

sys.exit(main())
