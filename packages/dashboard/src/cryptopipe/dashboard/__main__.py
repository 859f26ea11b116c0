"""``python -m cryptopipe.dashboard``: the same as ``cryptopipe dashboard``."""

import logging
import sys

from cryptopipe.dashboard.cli import main

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
sys.exit(main())
