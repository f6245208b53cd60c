"""``python -m pulsewire`` runs the command line."""

import sys

from pulsewire.cli import main

sys.exit(main())
