#!/usr/bin/env python
"""CFRL on real MNIST, side by side with alibi 0.9.6 in one run; prints one JSON line.

Same networks, weights and settings as seed 000 and ``shared/anchors/alibi_cfrl_mnist.py`` (classifier 2 epochs,
xavier autoencoder 4 epochs, latent 64, actor/critic hidden 256, batch 100, coeff_sparsity 7.5, coeff_consistency 0).
The black box is the user's classifier called eagerly: a numpy function wrapping it, as alibi's benchmark calls it
(``--predictor module`` passes the module itself).

* Speed: xrl's training loop over alibi's ``--alibi-steps`` steps (the same phases: exploration, then updates) and its
  explain images/s (1000 test images, batch 100, median of 3), measured before and after the alibi anchor runs in its
  own venv (the shared machine's load drifts; the JSON holds both and their mean); also for each opt-in
  ``--accelerate`` mode of the module black box. Both sides call the black box twice per explained batch
  (originals, counterfactuals); ``explain_own_images_per_s`` divides by the wall time less the black box's own
  seconds, to show what is left to the explainer (``explain_black_box_share``: the black box's part of the wall);
  ``fit_own_steps_per_s_loop`` likewise for the training loop. ``*_black_box_alone_*`` is the rate of the black-box
  calls alone (what an explainer whose own work took no time would reach), and ``*_speedup_bound_vs_alibi`` that
  rate over alibi's measured rate: the most any explainer calling the black box as given could show in this run.
* Time to validity 0.9: validity on the first 1000 test images (random targets different from the prediction) every
  ``--eval-every`` steps; the fit clock includes the one-off labelling/encoding of the training set and excludes
  evaluation. alibi's reference is the run of ``shared/FACTS.md`` (722 s at its default act_noise 0.1, quiet machine,
  5000 steps), also projected into this run's conditions (its preparation + 5000 steps at its measured loop speed).

    python bench/cfrl_mnist.py --threads 1 --steps 2500 --act-noise 0.3
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
ALIBI_TIME_TO_VALIDITY_S = 722.0  # alibi 0.9.6, act_noise 0.1, validity 0.9 at 5k steps (shared/FACTS.md), quiet machine


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


def explain_rate(cf: CounterfactualRL, X: np.ndarray, targets: np.ndarray, clock: dict | None = None) -> dict:
    """Images/s of ``explain`` (median of 3); with ``clock`` (the black box's own seconds, accumulated by the numpy
    predictor) also the black box's share and the explainer's own rate, ``n / (wall - black box)``: both sides make
    the same two black-box calls per batch, so the own rate is what an explainer can change."""
    cf.explain(X[:100], targets[:100])
    walls, own, bb = [], [], []
    for _ in range(3):
        if clock is not None:
            clock["s"] = 0.0
        t = time.perf_counter()
        cf.explain(X, targets, batch_size=100)
        walls.append(time.perf_counter() - t)
        if clock is not None:
            own.append(walls[-1] - clock["s"])
            bb.append(clock["s"])
    res = {"explain_images_per_s": round(len(X) / float(np.median(walls)), 1)}
    if own:
        res["explain_own_images_per_s"] = round(len(X) / float(np.median(own)), 1)
        res["explain_black_box_share"] = round(1 - float(np.median(own)) / float(np.median(walls)), 3)
        res["explain_black_box_alone_images_per_s"] = round(len(X) / float(np.median(bb)), 1)
    return res


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
    fit, exp = a.get("cfrl_fit", {}), (a.get("explain") or {}).get("target_ne_pred") or {}
    res = {"train_steps": args.alibi_steps, "fit_steps_per_s_loop": fit.get("steps_per_s_loop"),
           "prepare_s": fit.get("dataset_init_s"), "explain_images_per_s": exp.get("instances_per_s")}
    loop_bb = next((r["total_s"] for r in fit.get("breakdown", []) if r["site"] == "predictor"), None)
    if loop_bb is not None and fit.get("loop_s"):  # top-level predictor calls: the loop's, not the labelling's
        res["fit_own_steps_per_s_loop"] = round(args.alibi_steps / (fit["loop_s"] - loop_bb), 2)
        res["fit_black_box_alone_steps_per_s"] = round(args.alibi_steps / loop_bb, 2)
    if exp.get("wall_s_all") and exp.get("predictor_s") is not None:  # the anchor times its last repeat's black box
        own = exp["wall_s_all"][-1] - exp["predictor_s"]
        res["explain_own_images_per_s"] = round(exp["n"] / own, 1)
        res["explain_black_box_share"] = round(exp["predictor_s"] / exp["wall_s_all"][-1], 3)
        res["explain_black_box_alone_images_per_s"] = round(exp["n"] / exp["predictor_s"], 1)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000, help="most xrl steps for the validity curve")
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--predictor", choices=["numpy", "module"], default="numpy")
    ap.add_argument("--act-noise", type=float, default=0.1, help="xrl's exploration noise (alibi runs its default 0.1)")
    ap.add_argument("--curve-accelerate", default=None, help="accelerate= of the module black box for the curve")
    ap.add_argument("--accelerate", default="channels_last,compile", help="comma-separated modes, '' for none")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", default=str(data_home() / "bench_cfrl_mnist"))
    ap.add_argument("--alibi-python", default=os.environ.get("ALIBI_PYTHON", "/work/alibi-venv/bin/python"))
    ap.add_argument("--alibi-steps", type=int, default=400)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cache = Path(args.cache_dir)
    res: dict = {"bench": "cfrl_mnist", "torch": torch.__version__, "threads": args.threads, "act_noise": args.act_noise,
                 "predictor": args.predictor, "loadavg_start": round(os.getloadavg()[0], 2),
                 "glibc_tunables": os.environ.get("GLIBC_TUNABLES")}  # the anchor inherits them
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

    bb_clock = {"s": 0.0, "calls": []}  # seconds in the black box; (start, seconds) of each call

    def numpy_predictor(X: np.ndarray) -> np.ndarray:
        t = time.perf_counter()
        with torch.no_grad():
            out = clf(torch.as_tensor(X, dtype=torch.float32)).numpy()
        bb_clock["s"] += time.perf_counter() - t
        bb_clock["calls"].append((t, time.perf_counter() - t))
        return out

    X1k = X_test[:1000]
    targets = (predict_batched(clf, X1k).argmax(1) + np.random.default_rng(args.seed).integers(1, 10, 1000)) % 10

    def make(steps: int, predictor=None, **kw) -> CounterfactualRL:
        return CounterfactualRL(predictor or (clf if args.predictor == "module" else numpy_predictor), ae.encoder,
                                ae.decoder, coeff_sparsity=7.5, coeff_consistency=0, latent_dim=64, batch_size=100,
                                train_steps=steps, seed=args.seed, act_noise=args.act_noise, progress=False, **kw)

    variants = {"eager": {}, **{f"accelerate_{m}": {"predictor": clf, "accelerate": m}
                                for m in filter(None, args.accelerate.split(","))}}

    def speeds() -> dict:  # the loop over alibi's steps (the same phases) and explain, on 5000 training rows
        out = {}
        for name, kw in variants.items():
            explainer = make(args.alibi_steps, **kw)
            bb_clock["calls"], t0 = [], time.perf_counter()
            cf = explainer.fit(X_train[:5000])
            timing, out[name] = cf.fit_timing_, {"fit_steps_per_s_loop": round(cf.fit_timing_["steps_per_s"], 2)}
            timed = name == "eager" and args.predictor == "numpy"  # the black box's seconds are known
            if timed:  # the loop's black-box seconds: the calls after the one-off labelling of the training rows
                loop_bb = sum(dt for start, dt in bb_clock["calls"] if start >= t0 + timing["prepare_s"])
                out[name]["fit_own_steps_per_s_loop"] = round(timing["steps"] / (timing["loop_s"] - loop_bb), 2)
                out[name]["fit_black_box_alone_steps_per_s"] = round(timing["steps"] / loop_bb, 2)
            out[name].update(explain_rate(cf, X1k, targets, bb_clock if timed else None))
            print(json.dumps({name: out[name]}), file=sys.stderr, flush=True)
        return out

    before = speeds()  # xrl, alibi, xrl again: the shared machine's load drifts, so alibi is bracketed
    if Path(args.alibi_python).exists() and ANCHOR.exists():
        res["alibi"] = run_alibi(args, cache, mnist_dir)
    after, a = speeds(), res.get("alibi", {})
    for name in variants:
        r = res[name] = {k: round((before[name][k] + after[name][k]) / 2, 2) for k in before[name]}
        r["before_after"] = [before[name], after[name]]
        for key, ref in (("fit", "fit_steps_per_s_loop"), ("fit_own", "fit_own_steps_per_s_loop"),
                         ("explain", "explain_images_per_s"), ("explain_own", "explain_own_images_per_s")):
            if a.get(ref) and ref in r:  # the own rates are known for the numpy black box only
                r[f"{key}_speedup_vs_alibi"] = round(r[ref] / a[ref], 2)
        for key in ("fit", "explain"):  # the most any explainer could reach: its own work taking no time at all
            alone, ref = f"{key}_black_box_alone_{'steps' if key == 'fit' else 'images'}_per_s", (
                "fit_steps_per_s_loop" if key == "fit" else "explain_images_per_s")
            if a.get(ref) and alone in r:
                r[f"{key}_speedup_bound_vs_alibi"] = round(r[alone] / a[ref], 2)
    make_curve = make if not args.curve_accelerate else (
        lambda steps, **kw: make(steps, clf, accelerate=args.curve_accelerate, **kw))
    cf, curve = validity_curve(make_curve, X_train, X1k, targets, args.steps, args.eval_every)
    hit = next((c for c in curve if c["validity"] >= 0.9), None)
    res["curve"] = {"accelerate": args.curve_accelerate, "prepare_s": round(cf.fit_timing_["prepare_s"], 1),
                    "points": curve, "time_to_validity_0.9_s": hit and hit["fit_s"]}
    if hit:  # alibi's reference run took 5000 steps; in this run's conditions: its preparation + 5000 of its steps
        res["time_to_validity_0.9_fraction_of_alibi_reference"] = round(hit["fit_s"] / ALIBI_TIME_TO_VALIDITY_S, 3)
        if a.get("fit_steps_per_s_loop"):
            res["alibi_time_to_validity_0.9_s_this_run_projected"] = round(
                (a.get("prepare_s") or 0) + 5000 / a["fit_steps_per_s_loop"], 1)
            res["time_to_validity_0.9_fraction_of_alibi_projected"] = round(
                hit["fit_s"] / res["alibi_time_to_validity_0.9_s_this_run_projected"], 3)
    res["loadavg_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
