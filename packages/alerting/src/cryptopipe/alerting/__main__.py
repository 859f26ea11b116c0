"""``python -m cryptopipe.alerting`` = ``cryptopipe alerting``."""

import sys

from cryptopipe.alerting.cli import main

sys.exit(main())
