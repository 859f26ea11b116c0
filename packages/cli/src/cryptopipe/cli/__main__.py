"""``python -m cryptopipe.cli``: how the orchestrator starts each service as a child process."""

from cryptopipe.cli.main import run

run()
