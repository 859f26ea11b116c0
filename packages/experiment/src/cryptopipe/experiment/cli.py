"""``cryptopipe experiment run|compare|export``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

SUBCOMMANDS = {
    "run": ("cryptopipe.experiment.run", "run the pipeline and write a result directory"),
    "compare": ("cryptopipe.experiment.compare", "compare result directories in a report"),
    "export": ("cryptopipe.experiment.export", "build a result directory from Prometheus alone"),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in SUBCOMMANDS:
        lines = [f"  {name:8} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
        print("usage: cryptopipe experiment {run,compare,export} ...\n" + "\n".join(lines), file=sys.stderr)
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    module = importlib.import_module(SUBCOMMANDS[args[0]][0])
    return int(module.main(args[1:]))
