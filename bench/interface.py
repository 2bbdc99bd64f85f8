"""Benchmark of the Understanding-RL-Vision interface; prints ONE JSON line.

Builds the page of an agent with the interface's defaults (8 trajectories x 512 steps, 4,096 observations sampled
every 128 steps, 8 NMF features, every conv block, 10 integration steps, 512 feature-visualization steps) or the
given settings, and reports the wall time of each phase (rollouts, NMF per layer, attribution, dataset examples,
feature visualization, writing), the total and the output size, and the process CPU time per phase (on a shared
machine the wall time depends on the other jobs; with --threads 1 the CPU time is close to the wall time of an idle
machine). The page is written to --out (a temporary folder by default, removed afterwards).

Usage:
    python bench/interface.py --agent breakout                     # a bundled MinAtar agent, defaults
    python bench/interface.py --agent coinrun --trajectories 4 --steps 256 --observations 1024 \\
        --layers embedder.block2                                     # the quick CoinRun page
    python bench/interface.py --agent breakout --quick --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time

import torch


def main() -> None:
    from xrl.vision.interface.build import build_interface_timed
    from xrl.vision.interface.cli import QUICK

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agent", default="breakout")
    ap.add_argument("--env", default=None)
    ap.add_argument("--out", default=None, help="keep the page here (default: a temporary folder, removed)")
    ap.add_argument("--trajectories", type=int, default=8)
    ap.add_argument("--steps", type=int, default=512)
    ap.add_argument("--observations", type=int, default=4096)
    ap.add_argument("--obs-every", type=int, default=128)
    ap.add_argument("--features", type=int, default=8)
    ap.add_argument("--layers", default=None)
    ap.add_argument("--integrate-steps", type=int, default=10)
    ap.add_argument("--fv-steps", type=int, default=512)
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default torch's)")
    ap.add_argument("--quick", action="store_true", help="the --quick settings of the command line")
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    settings = dict(trajectories=args.trajectories, steps=args.steps, observations=args.observations,
                    obs_every=args.obs_every, fv_steps=args.fv_steps)
    if args.quick:
        settings.update(QUICK)
    tmp = None
    out = args.out
    if out is None:
        tmp = tempfile.mkdtemp(prefix="xrl_bench_interface_")
        out = os.path.join(tmp, "page")
    t0 = time.perf_counter()
    try:
        path, timing = build_interface_timed(args.agent, out, env=args.env, features=args.features,
                                             layers=args.layers, integrate_steps=args.integrate_steps,
                                             device=args.device, overwrite=True, progress=False, **settings)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    wall = time.perf_counter() - t0
    seconds = {k: timing[k] for k in ("setup", "rollouts", "nmf", "attribution", "dataset_examples",
                                      "feature_visualization", "writing") if k in timing}
    print(json.dumps({
        "bench": "interface", "agent": args.agent, "settings": {**settings, "features": args.features,
                                                                "layers": args.layers or "every conv block",
                                                                "integrate_steps": args.integrate_steps},
        "seconds": seconds, "nmf_per_layer_s": timing["nmf_per_layer"], "total_s": round(wall, 1),
        "cpu_seconds": timing["cpu"],
        "output_mb": round(timing["output_bytes"] / 1e6, 2), "page": None if tmp else str(path),
        "threads": torch.get_num_threads(), "device": args.device or "cpu", "cpus": os.cpu_count(),
        "torch": torch.__version__, "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d")}))


if __name__ == "__main__":
    main()
