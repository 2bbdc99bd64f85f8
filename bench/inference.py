#!/usr/bin/env python
"""xrl.accel on seed 000's networks: eager vs ``channels_last`` (and ``compile`` with ``--compile``); one JSON line.

Milliseconds per batch of 100 (median of ``--repeats`` timed calls after warm-up) for the classifier, encoder and
decoder without gradients, and the decoder forward + backward to its input (the actor update's pass), with the
largest absolute difference to eager. This is the measurement behind CFRL running its frozen encoder and decoder
through ``accelerate(..., "channels_last")`` by default. Weights: the reference initialisation (speed does not depend
on the values).

    python bench/inference.py [--threads 2] [--repeats 20] [--compile]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

from xrl.accel import accelerate
from xrl.models import AE, MNISTClassifier, MNISTDecoder, MNISTEncoder, glorot_init_


def timed(f, repeats: int) -> float:
    for _ in range(3):
        f()
    walls = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        walls.append(time.perf_counter() - t)
    return round(1000 * sorted(walls)[len(walls) // 2], 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--compile", action="store_true", help="also torch.compile (slow to build; needs a C++ compiler)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ae = glorot_init_(AE(MNISTEncoder(64), MNISTDecoder(64)))
        nets = {"classifier": MNISTClassifier(10).eval(), "encoder": ae.encoder.eval(), "decoder": ae.decoder.eval()}
    x, z = torch.rand(100, 1, 28, 28), torch.rand(100, 64) * 2 - 1
    inputs = {"classifier": x, "encoder": x, "decoder": z}
    res: dict = {"bench": "accel_inference", "torch": torch.__version__, "threads": args.threads, "batch": 100,
                 "loadavg_start": round(os.getloadavg()[0], 2)}
    for mode in ["channels_last"] + (["compile"] if args.compile else []):
        for name, net in nets.items():
            fast, inp = accelerate(net, mode, name), inputs[name]
            with torch.no_grad():
                ref = net(inp)
                diff = max(float((fast(inp) - ref).abs().max()) for _ in range(3))  # checks, then the fast path
                res[f"{name}_eager_ms"] = timed(lambda: net(inp), args.repeats)
                res[f"{name}_{mode}_ms"] = timed(lambda: fast(inp), args.repeats)
            res[f"{name}_{mode}_max_abs_diff"] = diff
        dec, fast = nets["decoder"], accelerate(nets["decoder"], mode, "decoder")
        zg = z.clone().requires_grad_()
        for p in dec.parameters():
            p.requires_grad_(False)
        for key, f in (("eager", dec), (mode, fast)):
            res[f"decoder_fwd_bwd_{key}_ms"] = timed(lambda: f(zg).sum().backward(), args.repeats)
    for name in nets:
        res[f"{name}_channels_last_speedup"] = round(res[f"{name}_eager_ms"] / res[f"{name}_channels_last_ms"], 2)
    res["loadavg_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
