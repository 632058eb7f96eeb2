"""``python -m emostream`` runs the CLI."""

import sys

from emostream.cli import main

sys.exit(main())
