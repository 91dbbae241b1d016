"""``numformer bench WHAT [options]``: run one of the packaged benchmarks.

``BENCHMARKS`` maps each name to a callable taking the remaining command-line
arguments (a list of strings) and returning an exit code; a benchmark module
with ``main(argv)`` is registered with one line, ``"name": _main_of("module")``.
Options after WHAT go to the benchmark (``numformer bench attention --help``).
PyTorch's side of each benchmark runs from the repository's benchmarks/twins/
(run from the repository root); without it, or without torch, only numformer
is timed.
"""

from __future__ import annotations

import argparse
import importlib


def _main_of(module: str):
    """A callable that imports ``module`` only when run and calls its ``main(argv)``."""
    def run(argv: list[str]) -> int:
        return int(importlib.import_module(module).main(argv) or 0)
    run.__doc__ = f"{module}.main"
    return run


BENCHMARKS = {
    "attention": _main_of("numformer.bench.attention"),
    "compare": _main_of("numformer.bench.compare"),  # two attention JSONs side by side
    "embeddings": _main_of("numformer.bench.embeddings"),
    "kernels": _main_of("numformer.bench.kernels"),
    "llm": _main_of("numformer.bench.llm_run"),
    "train_step": _main_of("numformer.bench.train_step"),
}


def run(args) -> int:
    return BENCHMARKS[args.what](list(args.options))


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks against PyTorch on the CPU (results under "
                                     "benchmarks/results)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=list(BENCHMARKS), help="which benchmark")
    p.add_argument("options", nargs=argparse.REMAINDER,
                   help="options of that benchmark (see numformer bench WHAT --help)")
    p.set_defaults(func=run)
