"""Count the defects of rendered reports (:mod:`evalterritoire.report.scan`), by kind.

Usage::

    .venv/bin/python scripts/scan_reports.py reports/2025 [--min-cell 5] [--show 3]

Prints, for each kind of defect, how many were found and on how many pages, with a few
examples; exit status 1 when any was found.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from evalterritoire.report.scan import DEFECTS, scan_reports


def main(argv: list[str] | None = None) -> int:
    """Scan a reports folder and print the defects by kind."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--min-cell", type=int, default=5)
    parser.add_argument("--show", type=int, default=3, help="examples per kind")
    args = parser.parse_args(argv)
    found = scan_reports(args.folder, min_cell=args.min_cell)
    counts = Counter(f.kind for fs in found.values() for f in fs)
    pages = Counter(kind for fs in found.values() for kind in {f.kind for f in fs})
    print(f"{len(found)} files scanned in {args.folder}")
    for kind in DEFECTS:
        print(f"{kind:16s} {counts.get(kind, 0):5d} findings on {pages.get(kind, 0):3d} pages")
        examples = [f.excerpt for fs in found.values() for f in fs if f.kind == kind]
        for text in examples[: args.show]:
            print(f"    {text}")
    return 1 if counts else 0


if __name__ == "__main__":
    sys.exit(main())
