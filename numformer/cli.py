"""The ``numformer`` command.

Each sub-command lives in its own module under ``numformer/commands/`` and
provides ``register(subparsers)``, which adds its parser and sets ``func``
(called with the parsed arguments, returning the exit code). Modules are
listed in ``COMMANDS`` in the order their help appears.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ["gradcheck", "train", "eval", "predict", "neighbors", "generate", "chat", "attention", "embed",
            "similarity", "bench"]


def build_parser() -> argparse.ArgumentParser:
    from numformer import __version__
    parser = argparse.ArgumentParser(
        prog="numformer", description="A transformer framework in NumPy with hand-written "
                                      "backward passes.")
    parser.add_argument("--version", action="version", version=f"numformer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"numformer.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"numformer.commands.{name}":
                continue  # not written yet
            raise
        module.register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from numformer.commands._common import CommandError
    try:
        return int(args.func(args) or 0)
    except CommandError as e:
        print(f"numformer {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
