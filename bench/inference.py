#!/usr/bin/env python
"""No-gradient passes of seed 000's networks: eager vs torch's traced oneDNN graph vs xrl's ``InferenceModule``
(graph rewrites of ``xrl._rewrite`` + the traced graph, or a channels-last copy for decoders), with and without the
compiled conv + max-pool kernel of ``xrl._kernels``; prints ONE JSON line.

Milliseconds per batch of 100 (best of --repeats timed loops, after warm-up), for 1 and 2 torch threads, and the
largest absolute difference to eager. Weights: the example's cached MNIST classifier / autoencoder when present
(``xrl.datasets.data_home() / "models"``), else the reference initialisation (speed does not depend on the values).

    python bench/inference.py [--repeats 15]
"""
from __future__ import annotations

import argparse
import json
import time
import warnings

import torch
from torch import nn

from xrl import _kernels
from xrl._inference import InferenceModule
from xrl.datasets import data_home
from xrl.io import load_tensors
from xrl.models import AE, MNISTClassifier, MNISTDecoder, MNISTEncoder, glorot_init_


def networks() -> tuple[dict[str, nn.Module], str]:
    clf, ae = MNISTClassifier(10), glorot_init_(AE(MNISTEncoder(64), MNISTDecoder(64)))
    models = data_home() / "models"
    source = "reference initialisation"
    try:
        clf.load_state_dict(load_tensors(models / "mnist_classifier_e2_s0.safetensors"))
        ae.load_state_dict(load_tensors(models / "mnist_ae64_e4_s0.safetensors"))
        source = f"cached weights in {models}"
    except (FileNotFoundError, OSError, RuntimeError, ValueError):
        pass
    return {"classifier": clf.eval(), "encoder": ae.encoder.eval(), "decoder": ae.decoder.eval()}, source


def traced(module: nn.Module, x: torch.Tensor):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.optimize_for_inference(torch.jit.trace(module, x, check_trace=False))


def ms_per_call(fn, x: torch.Tensor, repeats: int, calls: int = 20) -> float:
    for _ in range(3):
        fn(x)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            fn(x)
        best = min(best, (time.perf_counter() - t) / calls)
    return round(best * 1e3, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    nets, source = networks()
    torch.manual_seed(0)
    inputs = {"classifier": torch.rand(100, 1, 28, 28), "encoder": torch.rand(100, 1, 28, 28),
              "decoder": torch.rand(100, 64) * 2 - 1}
    _kernels.available()  # build the kernels now, so that the status below is final
    res: dict = {"bench": "xrl inference rewrites", "torch": torch.__version__, "weights": source,
                 "kernels": _kernels.status, "results": {}}
    with torch.no_grad():
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for name, net in nets.items():
                x = inputs[name]
                fast, plain = InferenceModule(net), InferenceModule(net, kernels=False)
                for m in (fast, plain):
                    m(x), m(x[:49])  # build and check, as at the first calls of an explainer
                ref = net(x)
                row = {"eager_ms": ms_per_call(net, x, args.repeats),
                       "traced_ms": ms_per_call(traced(net, x), x, args.repeats),
                       "xrl_no_kernels_ms": ms_per_call(plain, x, args.repeats),
                       "xrl_ms": ms_per_call(fast, x, args.repeats),
                       "xrl_status": fast.status,
                       "xrl_max_abs_diff": float((fast(x) - ref).abs().max())}
                row["xrl_vs_traced"] = round(row["traced_ms"] / row["xrl_ms"], 2)
                row["kernels_speedup"] = round(row["xrl_no_kernels_ms"] / row["xrl_ms"], 2)
                res["results"][f"{name}_{threads}_threads"] = row
    print(json.dumps(res))


if __name__ == "__main__":
    main()
