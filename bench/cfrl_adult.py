#!/usr/bin/env python
"""Benchmark: CounterfactualRLTabular on real UCI Adult, side by side with alibi 0.9.6. Prints one JSON line.

    python bench/cfrl_adult.py                                  # 10k steps, alibi measured in the same run
    python bench/cfrl_adult.py --train-steps 2000 --no-alibi    # quick, xrl only

Same settings on both sides (alibi's Adult example): adult.data split 80/20 (random_state=13), RandomForest black
box on ColumnTransformer features, HeAE hidden 128 / latent 15 (50 epochs), actor/critic hidden 256, batch 100,
coeff_sparsity = coeff_consistency = 0.5, immutable Marital Status / Relationship / Race / Sex, Age may only increase;
explain: 1000 random test rows flipped, batch 100 (median of 3 runs).

alibi runs through /work/shared/anchors/alibi_cfrl_tabular.py in its own venv (``--alibi-python``), for
``--alibi-steps`` steps (its loop speed does not depend on training length), just before xrl's speed segment of the
same length; ratios compare those two segments. Both sides use ``--threads`` torch threads (default 1: on a shared
2-core machine two OpenMP threads per process were measured 45x slower on these small networks).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
ANCHOR = Path(os.environ.get("XRL_ANCHORS", "/work/shared/anchors")) / "alibi_cfrl_tabular.py"
ALIBI_PY = os.environ.get("ALIBI_PYTHON", "/work/anchor/.venv-alibi/bin/python")


def _example():
    spec = importlib.util.spec_from_file_location("cfrl_adult_example", ROOT / "examples" / "cfrl_adult.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_alibi(args, adult_file: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "alibi.json"
        cmd = [args.alibi_python, str(ANCHOR), "--adult-data", str(adult_file), "--train-steps",
               str(args.alibi_steps), "--ae-epochs", str(args.alibi_ae_epochs), "--threads", str(args.threads),
               "--explain-n", str(args.explain_n), "--seed", str(args.seed), "--out", str(out)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
        if proc.returncode != 0:
            return {"error": proc.stderr[-1500:]}
        res = json.loads(out.read_text())
    fit = res["cfrl_fit"]
    ex = res["explain"]["random_test_flip_C_empty"]
    return {"wall_s": round(time.perf_counter() - t0, 1), "train_steps": fit["train_steps"],
            "steps_per_s": fit["steps_per_s_loop"], "steps_per_s_steady": fit["steps_per_s_steady_state"],
            "explain_rows_per_s": ex["instances_per_s"], "validity": ex["validity"],
            "immutable_violations": ex["immutable_violations"], "age_decreased": ex["age_decreased"],
            "classifier_test_acc": res["classifier_test_acc"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-steps", type=int, default=10_000)
    ap.add_argument("--ae-epochs", type=int, default=50)
    ap.add_argument("--explain-n", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--alibi-python", default=ALIBI_PY)
    ap.add_argument("--alibi-steps", type=int, default=1000)
    ap.add_argument("--alibi-ae-epochs", type=int, default=1, help="alibi's AE quality does not change its speed")
    ap.add_argument("--no-alibi", action="store_true")
    ap.add_argument("--adult-dir", default=None)
    ap.add_argument("--out", default=None, help="also write the JSON here")
    ap.add_argument("--example-out", default=None,
                    help="also write examples/cfrl_adult.py's outputs (tables, metrics.json, explainer/) here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ex = _example()
    from xrl.datasets.adult import adult_file
    from xrl.metrics.tabular import tabular_cf_metrics
    from xrl.preprocessing import TabularPreprocessor

    res: dict = {"bench": "cfrl_adult", "torch": torch.__version__, "python": platform.python_version(),
                 "threads": args.threads, "cpu_count": os.cpu_count(), "loadavg_start": os.getloadavg()[0],
                 "train_steps": args.train_steps}
    adult, X_tr, X_te, Y_tr, Y_te = ex.load_split(local_dir=args.adult_dir)
    alibi = None
    if not args.no_alibi and Path(args.alibi_python).exists() and ANCHOR.exists():
        alibi = run_alibi(args, adult_file("adult.data", local_dir=args.adult_dir))
    t0 = time.perf_counter()
    predictor = ex.black_box(X_tr, Y_tr, adult.category_map, args.seed)
    pred_te = predictor(X_te).argmax(1)
    res["classifier_test_acc"] = round(float((pred_te == Y_te).mean()), 4)
    pre = TabularPreprocessor(adult.feature_names, adult.category_map).fit(X_tr)
    ae, ae_s = ex.autoencoder(pre, X_tr, args.ae_epochs, None, args.seed)
    res["heae_train_s"] = round(ae_s, 1)
    cf = ex.explainer(predictor, ae, pre, train_steps=min(200, args.train_steps), seed=args.seed, progress=False)
    t0 = time.perf_counter()
    cf.fit(X_tr)  # includes the one-off init: encode + predict the training set
    res["fit_init_and_200_steps_s"] = round(time.perf_counter() - t0, 2)
    seg = args.alibi_steps if alibi else min(1000, args.train_steps)
    cf.params["train_steps"] = min(200 + seg, args.train_steps)
    t0 = time.perf_counter()
    cf.fit(X_tr)  # speed segment right after alibi's
    seg_s = time.perf_counter() - t0
    res["steps_per_s_segment"] = round((cf.params["train_steps"] - 200) / seg_s, 2)
    cf.params["train_steps"] = args.train_steps
    t0 = time.perf_counter()
    cf.fit(X_tr)
    rest_s = time.perf_counter() - t0
    loop_steps = args.train_steps - 200
    res["steps_per_s"] = round(loop_steps / (seg_s + rest_s), 2) if loop_steps > 0 else None
    res["fit_s"] = round(res["fit_init_and_200_steps_s"] + seg_s + rest_s, 1)

    rng = np.random.RandomState(args.seed + 7)
    idx = rng.choice(len(X_te), size=min(args.explain_n, len(X_te)), replace=False)
    Xe, target = X_te[idx], 1 - pred_te[idx]
    cf.explain(Xe[:100], Y_t=target[:100], C={})  # warm-up
    walls, exp = [], None
    for _ in range(3):
        t0 = time.perf_counter()
        exp = cf.explain(Xe, Y_t=target, C={}, batch_size=100)
        walls.append(time.perf_counter() - t0)
    res["explain_rows_per_s"] = round(len(Xe) / float(np.median(walls)), 1)
    m = tabular_cf_metrics(pre, Xe, exp.data["cf"]["X"], exp.data["cf"]["class"][:, 0], target,
                           immutable_features=ex.IMMUTABLE, increase_only=["Age"], Z_train=pre.transform(X_tr),
                           y_train=predictor(X_tr).argmax(1))
    res.update({k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items() if k != "n"})
    res["explain_n"] = int(len(Xe))
    if alibi is not None:
        res["alibi"] = alibi
        if "error" not in alibi:
            res["ratio_steps_per_s"] = round(res["steps_per_s_segment"] / alibi["steps_per_s"], 2)
            res["ratio_explain_rows_per_s"] = round(res["explain_rows_per_s"] / alibi["explain_rows_per_s"], 2)
    if args.example_out:
        out = Path(args.example_out)
        report = ex.evaluate(cf, pre, predictor, adult, X_tr, X_te, pred_te, out, args.explain_n, args.seed)
        report.update({"classifier_test_acc": res["classifier_test_acc"], "heae_train_s": res["heae_train_s"],
                       "train_steps": args.train_steps, "fit_s": res["fit_s"], "fit_steps_per_s": res["steps_per_s"],
                       "from": "bench/cfrl_adult.py"})
        (out / "metrics.json").write_text(json.dumps(report, indent=1))
        cf.save(out / "explainer")
    res["loadavg_end"] = os.getloadavg()[0]
    line = json.dumps(res)
    print(line)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(line + "\n")


if __name__ == "__main__":
    sys.exit(main())
