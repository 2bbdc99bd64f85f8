#!/usr/bin/env python
"""Benchmark: CounterfactualRLTabular on real UCI Adult, side by side with alibi 0.9.6. Prints one JSON line.

    python bench/cfrl_adult.py                                  # 10k steps, alibi measured in the same run
    python bench/cfrl_adult.py --train-steps 2000 --no-alibi    # quick, xrl only

Same settings on both sides (alibi's Adult example): adult.data split 80/20 (random_state=13), RandomForest black
box on ColumnTransformer features, HeAE hidden 128 / latent 15 (50 epochs), actor/critic hidden 256, batch 100,
coeff_sparsity = coeff_consistency = 0.5, immutable Marital Status / Relationship / Race / Sex, Age may only increase;
explain: 1000 random test rows flipped, batch 100 (median of 3 runs).

alibi runs through /work/shared/anchors/alibi_cfrl_tabular.py in its own venv (``--alibi-python``), for
``--alibi-steps`` steps (its loop speed does not depend on training length), just before xrl's fit.
``ratio_steps_per_s`` compares the two training loops' steps/s (xrl over its whole loop, alibi over its whole
loop: both exclude the one-off preparation); ``ratio_steps_per_s_segment`` compares alibi's loop with xrl's steps
200 to 200 + alibi's length only. Both sides use ``--threads`` torch threads (default 1: these networks are small).
The black box (a scikit-learn forest) is called as given, from the calling thread; the opt-in ``accelerate=`` of
:class:`~xrl.counterfactual.CounterfactualRL` applies to ``torch.nn.Module`` black boxes only, so there is no
accelerated variant here.

``--update-every`` (default 10, passed to both sides; alibi's own default is 1): the actor only changes at update
steps, so xrl collects the batches in between with one black-box call; the RandomForest's per-call overhead (about
two thirds of a one-batch step) then counts once per update. alibi does the same work at any update_every.
xrl also decays both learning rates linearly to 5% (``lr_decay=0.05``, as in ``xrl cfrl adult``); alibi keeps
them constant. ``--sparsity-gate`` (default 1, the example's; 0 = alibi's actor loss) weights each sample's sparsity
loss by the critic's estimate that its counterfactual is valid. The main explain figures use xrl's default
``explain(retries=16)`` (missed rows retried with perturbed latent codes); ``single_pass`` reports the actor's answer
alone (``retries=0``), like for like with alibi.
"""
from __future__ import annotations

import argparse
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

ANCHOR = Path(os.environ.get("XRL_ANCHORS", "/work/shared/anchors")) / "alibi_cfrl_tabular.py"
ALIBI_PY = os.environ.get("ALIBI_PYTHON", "/work/alibi-venv/bin/python")


def _example():
    from xrl.jobs import cfrl_adult  # the `xrl cfrl adult` job: black box, split, autoencoder, explainer, tables

    return cfrl_adult


_ALIBI_SHIM = """
import functools, runpy, sys
from alibi.explainers import CounterfactualRLTabular as C
C.__init__ = functools.partialmethod(C.__init__, update_every=int(sys.argv[1]))
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_alibi(args, adult_file: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "alibi.json"
        # the anchor script has no update_every option: a two-line shim sets it on alibi's constructor
        cmd = [args.alibi_python, "-c", _ALIBI_SHIM, str(args.update_every), str(ANCHOR),
               "--adult-data", str(adult_file), "--train-steps", str(args.alibi_steps), "--ae-epochs",
               str(args.alibi_ae_epochs), "--threads", str(args.threads), "--explain-n", str(args.explain_n),
               "--seed", str(args.seed), "--out", str(out)]
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


def _nearest(clock: list[tuple[int, float]], step: int) -> tuple[int, float]:
    return min(clock, key=lambda c: abs(c[0] - step)) if clock else (0, 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-steps", type=int, default=10_000)
    ap.add_argument("--ae-epochs", type=int, default=50)
    ap.add_argument("--explain-n", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--retries", type=int, default=None,
                    help="explain(retries=N) for the main figures (default: the explainer's, 16); alibi's single pass "
                         "(retries=0) is always reported apart as single_pass")
    ap.add_argument("--update-every", type=int, default=10,
                    help="both sides (alibi's default is 1; see the module docstring)")
    ap.add_argument("--sparsity-gate", type=float, default=1.0, help="0: alibi's actor loss (see the docstring)")
    ap.add_argument("--alibi-python", default=ALIBI_PY)
    ap.add_argument("--alibi-steps", type=int, default=1000)
    ap.add_argument("--alibi-ae-epochs", type=int, default=1, help="alibi's AE quality does not change its speed")
    ap.add_argument("--no-alibi", action="store_true")
    ap.add_argument("--adult-dir", default=None)
    ap.add_argument("--out", default=None, help="also write the JSON here")
    ap.add_argument("--example-out", default=None,
                    help="also write `xrl cfrl adult`'s outputs (tables, metrics.json, explainer/) here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ex = _example()
    from xrl.counterfactual import Callback
    from xrl.counterfactual.tabular import DEFAULT_RETRIES
    from xrl.datasets import data_home
    from xrl.datasets.adult import adult_file
    from xrl.metrics.tabular import tabular_cf_metrics
    from xrl.preprocessing import TabularPreprocessor

    res: dict = {"bench": "cfrl_adult", "torch": torch.__version__, "python": platform.python_version(),
                 "threads": args.threads, "cpu_count": os.cpu_count(), "loadavg_start": os.getloadavg()[0],
                 "train_steps": args.train_steps, "update_every": args.update_every,
                 "sparsity_gate": args.sparsity_gate}
    adult, X_tr, X_te, Y_tr, Y_te = ex.load_split(local_dir=args.adult_dir)
    alibi = None
    if not args.no_alibi and Path(args.alibi_python).exists() and ANCHOR.exists():
        alibi = run_alibi(args, adult_file("adult.data", local_dir=args.adult_dir))
    t0 = time.perf_counter()
    predictor = ex.black_box(X_tr, Y_tr, adult.category_map, args.seed)
    pred_te = predictor(X_te).argmax(1)
    res["classifier_test_acc"] = round(float((pred_te == Y_te).mean()), 4)
    pre = TabularPreprocessor(adult.feature_names, adult.category_map).fit(X_tr)
    t_ae = time.perf_counter()
    ae = ex.train_autoencoder(pre, X_tr, args.ae_epochs, args.seed)
    ae_s = time.perf_counter() - t_ae
    res["heae_train_s"] = round(ae_s, 1)
    clock: list[tuple[int, float]] = []

    class StepClock(Callback):
        def __call__(self, step, update, model, sample, losses):
            if update == 0:
                clock.append((step, time.perf_counter()))

    cf = ex.make_explainer(predictor, ae, pre, train_steps=args.train_steps, seed=args.seed, progress=False,
                      update_every=args.update_every, sparsity_gate=args.sparsity_gate, callbacks=[StepClock()])
    t0 = time.perf_counter()
    cf.fit(X_tr)  # one fit: the learning-rate schedule spans train_steps
    res["fit_s"] = round(time.perf_counter() - t0, 1)
    res["prepare_s"] = round(cf.fit_timing_["prepare_s"], 2)  # encode + predict the training set, once
    res["steps_per_s"] = round(cf.fit_timing_["steps_per_s"], 2)
    # a segment of alibi's length after the first 200 steps, reported beside the whole loop
    seg = args.alibi_steps if alibi else 1000
    (s1, t1), (s2, t2) = _nearest(clock, 200), _nearest(clock, 200 + seg)
    res["steps_per_s_segment"] = round((s2 - s1) / (t2 - t1), 2) if s2 > s1 else None

    rng = np.random.RandomState(args.seed + 7)
    idx = rng.choice(len(X_te), size=min(args.explain_n, len(X_te)), replace=False)
    Xe, target = X_te[idx], 1 - pred_te[idx]
    cf.explain(Xe[:100], Y_t=target[:100], C={})  # warm-up

    def timed_explain(retries):
        """Median rows/s of 3 runs, and the last run's explanation."""
        walls = []
        for _ in range(3):
            t0 = time.perf_counter()
            exp = cf.explain(Xe, Y_t=target, C={}, batch_size=100, retries=retries)
            walls.append(time.perf_counter() - t0)
        return round(len(Xe) / float(np.median(walls)), 1), exp

    res["explain_rows_per_s"], exp = timed_explain(args.retries)
    m = tabular_cf_metrics(pre, Xe, exp.data["cf"]["X"], exp.data["cf"]["class"][:, 0], target,
                           immutable_features=ex.IMMUTABLE, increase_only=["Age"], Z_train=pre.transform(X_tr),
                           y_train=predictor(X_tr).argmax(1))
    res.update({k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items() if k != "n"})
    res["explain_n"] = int(len(Xe))
    res["retries"] = DEFAULT_RETRIES if args.retries is None else args.retries
    rate_1, exp_1 = timed_explain(0)  # the actor's answer only, like for like with alibi
    m_1 = tabular_cf_metrics(pre, Xe, exp_1.data["cf"]["X"], exp_1.data["cf"]["class"][:, 0], target,
                             immutable_features=ex.IMMUTABLE, increase_only=["Age"])
    res["single_pass"] = {"retries": 0, "explain_rows_per_s": rate_1,
                          **{k: round(m_1[k], 4) if isinstance(m_1[k], float) else m_1[k]
                             for k in ("validity", "categorical_sparsity", "numerical_sparsity",
                                       "immutability_violations", "range_violations")}}
    if alibi is not None:
        res["alibi"] = alibi
        if "error" not in alibi:
            res["ratio_steps_per_s"] = round(res["steps_per_s"] / alibi["steps_per_s"], 2)
            res["ratio_steps_per_s_segment"] = round(res["steps_per_s_segment"] / alibi["steps_per_s"], 2)
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
