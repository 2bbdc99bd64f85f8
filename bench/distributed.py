#!/usr/bin/env python
"""Benchmark for xrl.distributed: rows/s of batch counterfactuals and frames/s of rollouts, serial vs 1 and 2 Ray
workers, with Ray's start-up cost stated separately. Prints ONE JSON line.

    python bench/distributed.py                          # 10,000 MNIST-sized rows, 32 envs x 512 steps
    python bench/distributed.py --rows 2000 --steps 64   # quick

Workloads
- explain: a CounterfactualRL with xrl's MNIST reference networks (classifier, encoder, decoder, actor), 28 x 28
  inputs (MNIST from ~/.cache/xrl if cached, else uniform noise: the throughput does not depend on the pixels),
  ``--batch-size`` rows per forward pass. The networks are untrained (fixed seeded weights): the work per row is
  that of a trained explainer. ``xrl.distributed.explain`` is checked equal to the serial explain.
- rollouts: the bundled MinAtar Breakout agent, ``collect_trajectories`` of ``--envs`` environments x ``--steps``
  steps (frames = envs x steps), actions sampled; checked equal (actions) to the serial function.

Timing
- ``ray_start_s``: ``ray.init`` of a local instance (once per process; a call with ``address=None`` pays it each
  time).
- per call, ``overhead_s``: the same call on one batch (explain) or one step (rollouts): starting the workers (a
  process each, importing torch and xrl), rebuilding the explainer or agent, one unit of work.
- ``per_s``: work / whole call time; ``per_s_steady``: work / (call time - overhead_s), the rate once workers run.
- ``cpu_ms_per_unit`` and ``core_share``: the same work once more, timed inside each worker (``map_items``): CPU
  milliseconds per row or frame, and the fraction of a core the workers got while working (CPU / wall time). On a
  machine whose cores are free, W workers reach about W / cpu_ms_per_unit (after the fixed costs); on a shared one,
  ``core_share`` says how much of a core each actually had.
The driver runs the serial baseline with ``--threads`` torch threads; each worker gets one CPU (Ray sets its
``OMP_NUM_THREADS`` to 1). ``loadavg`` and the busiest other processes at the start are recorded: on a shared
machine, compare runs only with that in mind.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def mnist_classifier():
    """The black box, built in each worker (seeded weights: the same everywhere)."""
    from xrl._utils import init_rng
    from xrl.models.mnist import MNISTClassifier

    with init_rng(0):
        return MNISTClassifier().eval()


def mnist_rows(n: int) -> tuple[np.ndarray, str]:
    try:
        from xrl.datasets import load_mnist

        _, (X, _) = load_mnist()
        source = "MNIST test images"
    except Exception:  # not cached and no network: the throughput does not depend on the pixels
        X, source = np.random.default_rng(0).random((n, 1, 28, 28), dtype=np.float32), "uniform noise 28 x 28"
    return np.concatenate([X] * (-(-n // len(X))))[:n], source


def build_explainer(path: Path, X: np.ndarray) -> None:
    from xrl._utils import init_rng
    from xrl.counterfactual import CounterfactualRL
    from xrl.models.mnist import MNISTDecoder, MNISTEncoder

    with init_rng(1):
        enc, dec = MNISTEncoder(latent_dim=64).eval(), MNISTDecoder(latent_dim=64).eval()
    cf = CounterfactualRL(mnist_classifier(), enc, dec, coeff_sparsity=7.5, coeff_consistency=0.0, latent_dim=64,
                          train_steps=5, exploration_steps=2, update_after=2, batch_size=32, progress=False, seed=0)
    cf.fit(X[:256]).save(path)


def explain_rows_cpu(chunk, explainer):
    """One chunk of explain in a worker: (CPU seconds of the worker process, wall seconds)."""
    X, Y_t, batch_size = chunk
    c0, t0 = time.process_time(), time.perf_counter()
    explainer.explain(X, Y_t, batch_size=batch_size)
    return time.process_time() - c0, time.perf_counter() - t0


def load_explainer(saved):
    return saved.load(mnist_classifier())


def rollout_share_cpu(share, agent):
    """One share of environments in a worker: (CPU seconds, wall seconds)."""
    from xrl.agents import collect_trajectories

    envs, steps, seed = share
    c0, t0 = time.process_time(), time.perf_counter()
    collect_trajectories(agent, "breakout", num_envs=envs, num_steps=steps, seed=seed, progress=False)
    return time.process_time() - c0, time.perf_counter() - t0


def bundled_breakout():
    from xrl.agents import load_bundled_agent

    return load_bundled_agent("breakout")


def cpu_use(parts: list, work: int) -> dict:
    """CPU seconds per unit of work inside the workers, and the share of a core each worker got while working."""
    cpu, wall = sum(p[0] for p in parts), sum(p[1] for p in parts)
    return {"cpu_ms_per_unit": round(1000 * cpu / work, 3), "core_share": round(cpu / wall, 2)}


def busiest_processes(n: int = 6) -> list[str]:
    try:
        out = subprocess.run(["ps", "-eo", "pcpu,args", "--sort=-pcpu"], capture_output=True, text=True,
                             timeout=10).stdout.splitlines()[1:n + 1]
    except (OSError, subprocess.SubprocessError):
        return []
    return [" ".join(line.split()[:3])[:100] for line in out]


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def rates(work: int, call_s: float, overhead_s: float) -> dict:
    steady = call_s - overhead_s
    return {"call_s": round(call_s, 2), "overhead_s": round(overhead_s, 2), "per_s": round(work / call_s, 1),
            "per_s_steady": round(work / steady, 1) if steady > 0 else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--envs", type=int, default=32)
    ap.add_argument("--steps", type=int, default=512)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import ray

    import xrl.distributed as xd
    from xrl.agents import collect_trajectories, load_bundled_agent
    from xrl.counterfactual import CounterfactualRL

    res: dict = {"bench": "xrl.distributed", "date": time.strftime("%Y-%m-%d"), "ray": ray.__version__,
                 "torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
                 "threads_serial": args.threads, "loadavg_start": round(os.getloadavg()[0], 2),
                 "busiest_processes_at_start": busiest_processes()}
    root = Path(tempfile.mkdtemp(prefix="xrl-bench-"))
    try:
        X, source = mnist_rows(args.rows)
        path = root / "explainer"
        build_explainer(path, X)
        Y_t = np.arange(args.rows) % 10
        explainer = CounterfactualRL.load(path, mnist_classifier())
        c0 = time.process_time()
        serial, serial_s = timed(explainer.explain, X, Y_t, batch_size=args.batch_size)
        res["explain"] = {"rows": args.rows, "data": source, "batch_size": args.batch_size,
                          "serial": {"call_s": round(serial_s, 2), "per_s": round(args.rows / serial_s, 1),
                                     **cpu_use([(time.process_time() - c0, serial_s)], args.rows)}}
        saved = xd.SavedExplainer.read(path)
        agent = load_bundled_agent("breakout")
        frames = args.envs * args.steps
        c0 = time.process_time()
        traj, traj_s = timed(collect_trajectories, agent, "breakout", num_envs=args.envs, num_steps=args.steps,
                             seed=0, progress=False)
        res["rollouts"] = {"frames": frames, "envs": args.envs, "steps": args.steps, "agent": "bundled breakout",
                           "serial": {"call_s": round(traj_s, 2), "per_s": round(frames / traj_s, 1),
                                      **cpu_use([(time.process_time() - c0, traj_s)], frames)}}

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        _, res["ray_start_s"] = timed(ray.init, num_cpus=max(args.workers), include_dashboard=False,
                                      _temp_dir=str(root / "ray"), log_to_driver=False)
        res["ray_start_s"] = round(res["ray_start_s"], 2)
        for w in args.workers:
            _, head_s = timed(xd.explain, path, mnist_classifier, X[:args.batch_size], Y_t[:args.batch_size],
                              num_workers=w, batch_size=args.batch_size, progress=False)
            dist, call_s = timed(xd.explain, path, mnist_classifier, X, Y_t, num_workers=w,
                                 batch_size=args.batch_size, progress=False)
            same = bool(np.array_equal(dist.data["cf"]["X"], serial.data["cf"]["X"]))
            res["explain"][f"workers_{w}"] = {**rates(args.rows, call_s, head_s), "equal_to_serial": same}
            _, head_s = timed(xd.collect_trajectories, agent, "breakout", num_workers=w, num_envs=args.envs,
                              num_steps=1, seed=0, progress=False)
            dtraj, call_s = timed(xd.collect_trajectories, agent, "breakout", num_workers=w, num_envs=args.envs,
                                  num_steps=args.steps, seed=0, progress=False)
            same = bool(np.array_equal(dtraj.actions, traj.actions) and np.array_equal(dtraj.obs, traj.obs))
            res["rollouts"][f"workers_{w}"] = {**rates(frames, call_s, head_s), "equal_to_serial": same}
            # the same work again, timed inside the workers (CPU vs wall): the basis of the scaling estimate
            step = args.batch_size * max(1, args.rows // (args.batch_size * 4 * w))
            chunks = [(X[a:a + step], Y_t[a:a + step], args.batch_size) for a in range(0, args.rows, step)]
            parts = xd.map_items(explain_rows_cpu, chunks, setup=functools.partial(load_explainer, saved),
                                 num_workers=w, progress=False)
            res["explain"][f"workers_{w}"].update(cpu_use(parts, args.rows))
            shares = [(args.envs // w, args.steps, k) for k in range(w)]
            parts = xd.map_items(rollout_share_cpu, shares, setup=bundled_breakout, num_workers=w, progress=False)
            res["rollouts"][f"workers_{w}"].update(cpu_use(parts, frames))
        ray.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    res["loadavg_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(res))


if __name__ == "__main__":
    sys.exit(main())
