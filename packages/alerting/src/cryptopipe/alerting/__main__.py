"""``python -m cryptopipe.alerting`` = ``cryptopipe alerting``."""

from cryptopipe.alerting.cli import run

run()
