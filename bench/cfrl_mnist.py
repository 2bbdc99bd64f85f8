#!/usr/bin/env python
"""CFRL on real MNIST, side by side with alibi 0.9.6 in one run; prints one JSON line.

Same networks, weights and settings as seed 000 and ``shared/anchors/alibi_cfrl_mnist.py`` (classifier 2 epochs,
xavier autoencoder 4 epochs, latent 64, actor/critic hidden 256, batch 100, coeff_sparsity 7.5, coeff_consistency 0,
act_noise 0.1 = alibi's default). The black box is the user's classifier called eagerly: a numpy function wrapping
it, as alibi's benchmark calls it (``--predictor module`` passes the module itself).

* ``xrl``: time to validity 0.9 (validity on the first 1000 test images, random targets different from the
  prediction, every ``--eval-every`` steps; the fit clock includes the one-off labelling/encoding of the training set
  and excludes evaluation), the loop's steps/s over alibi's ``--alibi-steps`` (and over all steps), explain images/s
  (median of 3, batch 100).
* ``alibi``: the anchor script for ``--alibi-steps`` steps in its own venv (loop steps/s, explain images/s); its time
  to validity is the reference run of ``FACTS.md`` (722 s to 0.9 at its default noise, same machine kind).
* ``accelerated``: the same with the opt-in ``accelerate=`` of a module black box, ``--accel-steps`` steps.

    python bench/cfrl_mnist.py --steps 3000 --alibi-python /work/alibi-venv/bin/python
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

from xrl.counterfactual import CounterfactualRL
from xrl.datasets import data_home, load_mnist
from xrl.models import AE, MNISTClassifier, MNISTDecoder, MNISTEncoder, glorot_init_
from xrl.models.training import predict_batched, train_model

ANCHOR = Path(os.environ.get("XRL_ANCHORS", "/work/shared/anchors")) / "alibi_cfrl_mnist.py"
ALIBI_TIME_TO_VALIDITY_S = 722.0  # alibi 0.9.6, act_noise 0.1, validity 0.9 at 5k steps (shared/FACTS.md)


def load_or_train(model: torch.nn.Module, path: Path, fit) -> str:
    """The anchor's weight cache (state dicts, read with weights_only=True): alibi runs on the very same weights."""
    if path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        model.eval()
        return "loaded"
    fit()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return "trained"


def explain_rate(cf: CounterfactualRL, X: np.ndarray, targets: np.ndarray) -> float:
    cf.explain(X[:100], targets[:100])
    walls = []
    for _ in range(3):
        t = time.perf_counter()
        cf.explain(X, targets, batch_size=100)
        walls.append(time.perf_counter() - t)
    return round(len(X) / float(np.median(walls)), 1)


def validity_curve(make, X_train, X1k, targets, steps: int, every: int) -> tuple[CounterfactualRL, list]:
    """Validity every ``every`` steps from a callback (as alibi's time-to-validity anchor); evaluation time is
    excluded from the fit clock, which includes the one-off labelling/encoding of the training set."""
    curve, clock = [], {"eval_s": 0.0, "t0": 0.0}

    def evaluate(step, update, model, sample, losses):
        if (step + 1) % every or update:
            return
        t = time.perf_counter()
        e = model.explain(X1k, Y_t=targets, batch_size=100)
        clock["eval_s"] += time.perf_counter() - t
        curve.append({"step": step + 1, "fit_s": round(time.perf_counter() - clock["t0"] - clock["eval_s"], 2),
                      "validity": float((e.data["cf"]["class"][:, 0] == targets).mean()),
                      "l1": round(float(np.abs(e.data["cf"]["X"] - X1k).reshape(len(X1k), -1).sum(1).mean()), 2)})
        print(json.dumps(curve[-1]), file=sys.stderr, flush=True)

    cf = make(steps, callbacks=[evaluate])
    clock["t0"] = time.perf_counter()
    cf.fit(X_train)
    return cf, curve


def run_alibi(args, cache: Path, mnist_dir: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "alibi.json"
        cmd = [args.alibi_python, str(ANCHOR), "--data-dir", mnist_dir, "--train-steps", str(args.alibi_steps),
               "--cache-dir", str(cache), "--threads", str(args.threads), "--out", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
        if proc.returncode != 0 or not out.exists():
            return {"error": proc.stderr[-1500:]}
        a = json.loads(out.read_text())
    fit, exp = a.get("cfrl_fit", {}), a.get("explain", {})
    return {"train_steps": args.alibi_steps, "fit_steps_per_s_loop": fit.get("steps_per_s_loop"),
            "prepare_s": fit.get("dataset_init_s"),
            "explain_images_per_s": (exp.get("target_ne_pred") or {}).get("instances_per_s")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000, help="most xrl steps for the validity curve")
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--predictor", choices=["numpy", "module"], default="numpy")
    ap.add_argument("--accelerate", default="channels_last,compile", help="comma-separated modes, '' for none")
    ap.add_argument("--accel-steps", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", default=str(data_home() / "bench_cfrl_mnist"))
    ap.add_argument("--alibi-python", default=os.environ.get("ALIBI_PYTHON", "/work/alibi-venv/bin/python"))
    ap.add_argument("--alibi-steps", type=int, default=400)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cache = Path(args.cache_dir)
    res: dict = {"bench": "cfrl_mnist", "torch": torch.__version__, "threads": args.threads, "act_noise": 0.1,
                 "predictor": args.predictor, "loadavg_start": round(os.getloadavg()[0], 2)}
    (X_train, y_train), (X_test, _) = load_mnist()
    from xrl.datasets.mnist import mnist_files
    mnist_dir = str(next(iter(mnist_files().values())).parent)
    clf = MNISTClassifier(10)
    res["classifier"] = load_or_train(clf, cache / f"mnist_clf_e2_s{args.seed}.pt", lambda: train_model(
        clf, X_train, y_train, epochs=2, seed=args.seed, desc="classifier"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        ae = glorot_init_(AE(MNISTEncoder(64), MNISTDecoder(64)))
    res["autoencoder"] = load_or_train(ae, cache / f"mnist_ae_xavier_e4_s{args.seed}.pt", lambda: train_model(
        ae, X_train, None, epochs=4, seed=args.seed, desc="autoencoder"))
    if Path(args.alibi_python).exists() and ANCHOR.exists():  # alibi first, on the weights just cached
        res["alibi"] = run_alibi(args, cache, mnist_dir)

    def numpy_predictor(X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return clf(torch.as_tensor(X, dtype=torch.float32)).numpy()

    X1k = X_test[:1000]
    targets = (predict_batched(clf, X1k).argmax(1) + np.random.default_rng(args.seed).integers(1, 10, 1000)) % 10

    def make(steps: int, predictor=None, **kw) -> CounterfactualRL:
        return CounterfactualRL(predictor or (clf if args.predictor == "module" else numpy_predictor), ae.encoder,
                                ae.decoder, coeff_sparsity=7.5, coeff_consistency=0, latent_dim=64, batch_size=100,
                                train_steps=steps, seed=args.seed, progress=False, **kw)

    cf, curve = validity_curve(make, X_train, X1k, targets, args.steps, args.eval_every)
    hit, prep = next((c for c in curve if c["validity"] >= 0.9), None), cf.fit_timing_["prepare_s"]
    at = next(c for c in curve if c["step"] >= args.alibi_steps)  # alibi's loop ran these steps: the same phases
    res["xrl"] = {"prepare_s": round(prep, 1), "curve": curve,
                  "fit_steps_per_s_loop": round(at["step"] / (at["fit_s"] - prep), 2),
                  "fit_steps_per_s_loop_all": round(curve[-1]["step"] / (curve[-1]["fit_s"] - prep), 2),
                  "time_to_validity_0.9_s": hit and hit["fit_s"], "explain_images_per_s": explain_rate(cf, X1k, targets)}
    if hit:
        res["time_to_validity_0.9_fraction_of_alibi"] = round(hit["fit_s"] / ALIBI_TIME_TO_VALIDITY_S, 3)
    a = res.get("alibi", {})
    if a.get("fit_steps_per_s_loop"):
        res["fit_speedup_vs_alibi"] = round(res["xrl"]["fit_steps_per_s_loop"] / a["fit_steps_per_s_loop"], 2)
    if a.get("explain_images_per_s"):
        res["explain_speedup_vs_alibi"] = round(res["xrl"]["explain_images_per_s"] / a["explain_images_per_s"], 2)
    for mode in filter(None, args.accelerate.split(",")):
        acc = make(args.accel_steps, clf, accelerate=mode)
        t = time.perf_counter()
        acc.fit(X_train)
        r = {"fit_s": round(time.perf_counter() - t, 1), "fit_steps_per_s_loop": round(acc.fit_timing_["steps_per_s"], 2),
             "explain_images_per_s": explain_rate(acc, X1k, targets), "status": acc.black_box.call.status}
        for key, ref in (("fit", "fit_steps_per_s_loop"), ("explain", "explain_images_per_s")):
            if a.get(ref):
                r[f"{key}_speedup_vs_alibi"] = round(r[ref] / a[ref], 2)
        res[f"accelerate_{mode}"] = r
        print(json.dumps({mode: r}), file=sys.stderr, flush=True)
    res["loadavg_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
