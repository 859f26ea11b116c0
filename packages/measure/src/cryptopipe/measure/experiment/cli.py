"""``cryptopipe experiment run|compare|export``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

SUBCOMMANDS = {
    "run": ("cryptopipe.measure.experiment.run", "run the pipeline and write a result directory"),
    "compare": ("cryptopipe.measure.experiment.compare", "compare result directories in a report"),
    "export": ("cryptopipe.measure.experiment.export", "build a result directory from Prometheus alone"),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[args[0]][0])
        return int(module.main(args[1:]))
    lines = [f"  {name:8} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    usage = "usage: cryptopipe experiment {run,compare,export} ...\n" + "\n".join(lines)
    if args[:1] in (["-h"], ["--help"]):
        print(usage)  # asked for: stdout, status 0
        return 0
    problem = f"unknown subcommand {args[0]!r}" if args else "a subcommand is required"
    print(f"{usage}\ncryptopipe experiment: error: {problem}", file=sys.stderr)
    return 2
