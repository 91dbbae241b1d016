"""``numformer gradcheck``: the finite-difference check of every op, layer and a small model."""

from __future__ import annotations

import fnmatch
import sys


def run(args) -> int:
    from numformer.gradcheck_suite import CASES, run_all
    if args.list:
        print("\n".join(CASES))
        return 0
    names = [n for n in CASES if any(fnmatch.fnmatch(n, pat) for pat in args.only)] \
        if args.only else list(CASES)
    if not names:
        print(f"numformer gradcheck: no check matches {args.only}; see --list", file=sys.stderr)
        return 2
    ok = run_all(names)
    print(f"\n{len(names)} checks, float64, central differences (h=1e-5), random upstream "
          f"gradient: {'all within tolerance (norm rel <= 1e-7)' if ok else 'FAILURES above'}")
    return 0 if ok else 1


def register(sub) -> None:
    p = sub.add_parser("gradcheck", help="finite-difference check of every op, layer and a "
                                         "small whole model")
    p.add_argument("--only", nargs="*", metavar="PATTERN",
                   help="run only the checks whose names match (glob, e.g. 'op/*')")
    p.add_argument("--list", action="store_true", help="list the checks and exit")
    p.set_defaults(func=run)
