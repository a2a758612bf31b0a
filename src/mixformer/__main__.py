"""``python -m mixformer`` runs the command line."""

import sys

from mixformer.cli import main

sys.exit(main())
