#!/usr/bin/env python
"""CFRL on real MNIST: fit steps/s, explain images/s, and validity / L1 over training; one JSON line on stdout.

Same networks and settings as seed 000 and ``shared/anchors/alibi_cfrl_mnist.py`` (latent 64, actor/critic hidden
256, batch 100, coeff_sparsity 7.5, coeff_consistency 0). Validity is measured on the first 1000 test images with
random targets different from the prediction, every ``--eval-every`` steps, evaluation time excluded from the fit
clock (as ``alibi_time_to_validity.py`` does). With ``--alibi-python`` the alibi anchor runs in the same invocation
(same weights when ``--cache-dir`` is shared) and the JSON holds the ratios.

    python bench/cfrl_mnist.py --steps 3000 --alibi-python ../anchor/.venv-alibi/bin/python --alibi-steps 400
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from xrl.counterfactual import Callback, CounterfactualRL
from xrl.datasets import data_home, load_mnist
from xrl.models import AE, MNISTClassifier, MNISTDecoder, MNISTEncoder, glorot_init_
from xrl.models.training import load_or_train, predict_batched, train_model

ANCHOR = Path(__file__).resolve().parents[1].parent / "shared" / "anchors" / "alibi_cfrl_mnist.py"
# alibi 0.9.6 time-to-validity on this machine kind (shared/FACTS.md, anchors/alibi_time_to_validity.py, one run):
ALIBI_TIME_TO_VALIDITY_S = {"0.9": 722.0, "0.87": 580.0}


def load_or_train_pt(model: torch.nn.Module, path: Path, fit, shared: Path | None = None) -> str:
    """The anchor caches state dicts with torch.save; read them with weights_only=True (no code can run).
    Weights the example already trained (``shared``, safetensors) are reused and exported for the anchor."""
    if not path.exists() and shared is not None and shared.exists():
        load_or_train(model, shared, fit)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), path)
        return "loaded (example cache)"
    if path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        model.eval()
        return "loaded"
    fit()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)  # the anchor's cache format, so alibi runs on the very same weights
    return "trained"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--predictor", choices=["module", "numpy"], default="numpy",
                    help="numpy: a numpy->numpy black box as in alibi's benchmark; module: xrl's torch fast path")
    ap.add_argument("--one-target", action="store_true",
                    help="alibi's critic (one target per transition) instead of all_targets=True")
    ap.add_argument("--act-noise", type=float, default=0.1, help="seed/alibi default 0.1; 0.3 learned faster here")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", default=str(data_home() / "bench_cfrl_mnist"))
    ap.add_argument("--mnist-dir", default=None)
    ap.add_argument("--alibi-python", default=None, help="python of a venv with alibi 0.9.6 (anchors/setup_alibi_venv.sh)")
    ap.add_argument("--alibi-steps", type=int, default=400)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cache = Path(args.cache_dir)
    res: dict = {"bench": "xrl CounterfactualRL MNIST", "torch": torch.__version__, "threads": args.threads,
                 "steps": args.steps, "predictor": args.predictor, "all_targets": not args.one_target,
                 "act_noise": args.act_noise}

    (X_train, y_train), (X_test, y_test) = load_mnist(args.mnist_dir)
    if args.mnist_dir is None:  # the anchor reads the raw idx files: point it at our verified cache
        from xrl.datasets.mnist import mnist_files
        mnist_dir = str(next(iter(mnist_files().values())).parent)
    else:
        mnist_dir = args.mnist_dir

    clf = MNISTClassifier(10)
    res["classifier"] = load_or_train_pt(clf, cache / f"mnist_clf_e2_s{args.seed}.pt",
                                         lambda: train_model(clf, X_train, y_train, epochs=2, seed=args.seed,
                                                             desc="classifier"),
                                         data_home() / "models" / f"mnist_classifier_e2_s{args.seed}.safetensors")
    torch.manual_seed(args.seed)
    ae = glorot_init_(AE(MNISTEncoder(64), MNISTDecoder(64)))
    res["autoencoder"] = load_or_train_pt(ae, cache / f"mnist_ae_xavier_e4_s{args.seed}.pt",
                                          lambda: train_model(ae, X_train, None, epochs=4, seed=args.seed,
                                                              desc="autoencoder"),
                                          data_home() / "models" / f"mnist_ae64_e4_s{args.seed}.safetensors")
    res["classifier_test_accuracy"] = float((predict_batched(clf, X_test).argmax(1) == y_test).mean())

    def numpy_predictor(X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return clf(torch.as_tensor(X, dtype=torch.float32)).numpy()

    predictor = clf if args.predictor == "module" else numpy_predictor
    X1k = X_test[:1000]
    pred = predict_batched(clf, X1k).argmax(1)
    targets = (pred + np.random.default_rng(args.seed).integers(1, 10, size=1000)) % 10
    curve: list[dict] = []
    clock = {"eval_s": 0.0, "t0": 0.0}

    class Evaluate(Callback):
        def __call__(self, step, update, model, sample, losses):
            if (step + 1) % args.eval_every or update:
                return
            t = time.perf_counter()
            e = model.explain(X1k, Y_t=targets, batch_size=100)
            v = float((e.data["cf"]["class"][:, 0] == targets).mean())
            l1 = float(np.abs(e.data["cf"]["X"] - X1k).reshape(1000, -1).sum(1).mean())
            clock["eval_s"] += time.perf_counter() - t
            fit_s = time.perf_counter() - clock["t0"] - clock["eval_s"]
            curve.append({"step": step + 1, "fit_s": round(fit_s, 1), "validity": v, "l1": round(l1, 2)})
            print(json.dumps(curve[-1]), file=sys.stderr, flush=True)

    explainer = CounterfactualRL(predictor, ae.encoder, ae.decoder, coeff_sparsity=7.5, coeff_consistency=0,
                                 latent_dim=64, train_steps=args.steps, batch_size=100, seed=args.seed,
                                 all_targets=not args.one_target,
                                 act_noise=args.act_noise, callbacks=[Evaluate()], progress=False)
    clock["t0"] = time.perf_counter()
    explainer.fit(X_train)
    fit_s = time.perf_counter() - clock["t0"] - clock["eval_s"]
    res["fit_wall_s"] = round(fit_s, 1)
    res["fit_steps_per_s"] = round(args.steps / fit_s, 2)  # whole fit, incl. the one-off preparation
    res["prepare_s"] = round(explainer.fit_timing_["prepare_s"], 1)
    # the loop alone, as alibi's anchor reports it (``steps_per_s_loop``); evaluation time excluded
    res["fit_steps_per_s_loop"] = round(args.steps / (fit_s - explainer.fit_timing_["prepare_s"]), 2)
    res["curve"] = curve
    res["validity_final"] = curve[-1]["validity"] if curve else None
    res["l1_final"] = curve[-1]["l1"] if curve else None
    for th in ("0.87", "0.9"):
        hit = next((c for c in curve if c["validity"] >= float(th)), None)
        res[f"time_to_validity_{th}_s"] = hit and hit["fit_s"]
        if hit:
            res[f"time_to_validity_{th}_vs_alibi_reference"] = round(ALIBI_TIME_TO_VALIDITY_S[th] / hit["fit_s"], 2)
    walls = []
    explainer.explain(X1k[:100], Y_t=targets[:100])
    for _ in range(3):
        t = time.perf_counter()
        explainer.explain(X1k, Y_t=targets, batch_size=100)
        walls.append(time.perf_counter() - t)
    res["explain_images_per_s"] = round(1000 / float(np.median(walls)), 1)

    if args.alibi_python:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "alibi.json"
            cmd = [args.alibi_python, str(ANCHOR), "--data-dir", mnist_dir, "--train-steps", str(args.alibi_steps),
                   "--cache-dir", str(cache), "--threads", str(args.threads), "--out", str(out)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0 or not out.exists():
                res["alibi_error"] = proc.stderr[-1500:]
            else:
                a = json.loads(out.read_text())
                fit = a.get("cfrl_fit", {})
                steps_s = fit.get("steps_per_s_loop") or fit.get("steps_per_s_incl_init")
                steps_s_all = fit.get("steps_per_s_incl_init")
                exp = a.get("explain", {})
                exp_rate = (exp.get("target_ne_pred") or {}).get("instances_per_s")
                res["alibi"] = {"train_steps": args.alibi_steps, "fit_steps_per_s_loop": steps_s,
                                "fit_steps_per_s": steps_s_all, "prepare_s": fit.get("dataset_init_s"),
                                "explain_images_per_s": exp_rate}
                if steps_s:  # loop vs loop: both label the training set once before the loop (prepare_s)
                    res["fit_speedup_vs_alibi"] = round(res["fit_steps_per_s_loop"] / steps_s, 2)
                if exp_rate:
                    res["explain_speedup_vs_alibi"] = round(res["explain_images_per_s"] / exp_rate, 2)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
