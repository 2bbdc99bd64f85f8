"""``xrl report``: every capability on bundled defaults, in one folder with one index.html (``make demo``)."""
from __future__ import annotations

import argparse
import json

from ._common import add_common, apply_threads, device_of, finish


def register(sub: argparse._SubParsersAction) -> None:
    from ..report import SECTIONS

    p = sub.add_parser("report", help="run every capability on bundled defaults; one folder, one index.html",
                       description="Run CFRL on MNIST and Adult, the RL-vision interface and walk-through of a bundled "
                       "MinAtar agent, and the world-model latent explanations, and write one folder whose "
                       "index.html links everything (the `make demo` job). A failed section is shown on the page "
                       "and the exit status is 1.")
    add_common(p, out="outputs/report", quick="every job at smoke-test size")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="run only these")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..report import build_report

    apply_threads(args)
    index = build_report(args.out, quick=args.quick, sections=tuple(args.sections), seed=args.seed,
                         device=device_of(args), progress=args.progress)
    results = json.loads((index.parent / "report.json").read_text())
    status = {k: v["status"] for k, v in results.items() if isinstance(v, dict) and "status" in v}
    finish({"index": str(index), "sections": status, "seconds": results["total_seconds"]}, index,
           f"open {index} in a browser")
    return 0 if all(s == "ok" for s in status.values()) else 1
