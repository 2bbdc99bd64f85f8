#!/usr/bin/env python
"""`make demo` from a fresh clone, timed; prints one JSON line.

    python bench/make_demo.py [--repo .] [--keep]

Clones ``--repo`` (its committed HEAD) into a temporary folder, then runs ``make venv`` (the virtual environment:
pip, torch, the package with all extras) and ``make demo`` (``xrl report`` on bundled defaults) there, and reports
the wall time of each, the total, the report's per-section seconds and statuses, and the load average before and
after (the reference machine is shared: a high load stretches every figure). ``--keep`` leaves the clone in place.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    ap.add_argument("--keep", action="store_true", help="keep the temporary clone")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="xrl-demo-"))
    clone = tmp / "xrl"
    res: dict = {"bench": "make_demo", "repo": args.repo, "loadavg_start": os.getloadavg()[0],
                 "cpu_count": os.cpu_count()}
    t_all = time.perf_counter()
    subprocess.run(["git", "clone", "-q", args.repo, str(clone)], check=True)
    res["commit"] = subprocess.run(["git", "-C", str(clone), "rev-parse", "--short", "HEAD"], check=True,
                                   capture_output=True, text=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    for target in ("venv", "demo"):
        t0 = time.perf_counter()
        proc = subprocess.run(["make", target], cwd=clone, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        res[f"make_{target}_s"] = round(time.perf_counter() - t0, 1)
        if proc.returncode:
            res[f"make_{target}_error"] = proc.stderr[-2000:]
            break
    res["total_s"] = round(time.perf_counter() - t_all, 1)
    report = clone / "outputs" / "report" / "report.json"
    if report.is_file():
        r = json.loads(report.read_text())
        res["sections"] = {k: {"status": v.get("status"), "seconds": v.get("seconds")}
                           for k, v in r.items() if isinstance(v, dict) and "status" in v}
        mnist = r.get("cfrl_mnist", {}).get("metrics", {})
        res["mnist_validity_random_targets"] = mnist.get("random_targets", {}).get("validity")
        adult = r.get("cfrl_adult", {}).get("metrics", {})
        res["adult_validity"] = adult.get("random_test_flip", {}).get("validity")
    res["loadavg_end"] = os.getloadavg()[0]
    res["clone"] = str(clone) if args.keep else None
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(res))
    sys.exit(0 if "make_demo_error" not in res and "make_venv_error" not in res else 1)


if __name__ == "__main__":
    main()
