"""CFRL on real UCI Adult, mirroring alibi's ``cfrl_adult`` example (seed 001), with constraints checked on every row.

Black box: RandomForest (alibi's settings) on one-hot + standardised features (~0.86 test accuracy). Explainer:
heterogeneous autoencoder (hidden 128, latent 15) + ``CounterfactualRLTabular`` (batch 100, coeff_sparsity =
coeff_consistency = 0.5), immutable Marital Status / Relationship / Race / Sex, "Age may only increase".
Counterfactuals flip the black box's class for random test rows.

Files written to ``out``: ``counterfactuals.csv`` (before/after per row), ``table.html`` and ``table.md`` (the first
rows, changed cells highlighted), ``metrics.json`` and ``explainer/`` (the saved explainer).
"""
from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import io
from .._utils import init_rng, resolve_device
from .._validation import check_scalar

IMMUTABLE = ["Marital Status", "Relationship", "Race", "Sex"]
RANGES = {"Age": [0.0, 1.0]}
LATENT, HIDDEN_AE, HIDDEN_RL = 15, 128, 256
TABLE_STYLE = ("table{border-collapse:collapse;font:13px sans-serif}td,th{border:1px solid #ccc;padding:3px 6px}"
               "tr.cf td{border-bottom:2px solid #888}td.chg{background:#ffe08a;font-weight:bold}")


def black_box(X_train: np.ndarray, Y_train: np.ndarray, category_map: dict, seed: int = 0):
    """alibi's example black box: ColumnTransformer(one-hot categories, standardised numbers) + RandomForest.

    Returns ``predictor(X) -> class probabilities [N, 2]``, a numpy-in, numpy-out black box.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    cat_ids = list(category_map)
    num_ids = [i for i in range(X_train.shape[1]) if i not in category_map]
    ct = ColumnTransformer([("cat", OneHotEncoder(categories=[list(range(len(v))) for v in category_map.values()],
                                                  handle_unknown="ignore"), cat_ids),
                            ("num", StandardScaler(), num_ids)], sparse_threshold=0).fit(X_train)
    clf = RandomForestClassifier(max_depth=15, min_samples_split=10, n_estimators=50, random_state=seed)
    clf.fit(ct.transform(X_train), Y_train)

    def predictor(X: np.ndarray) -> np.ndarray:
        return clf.predict_proba(ct.transform(X))

    return predictor


def load_split(seed_split: int = 13, local_dir=None):
    """alibi's example split of ``adult.data``: 80/20 with ``random_state=13``.

    Returns ``(adult, X_train, X_test, Y_train, Y_test)``.
    """
    from sklearn.model_selection import train_test_split

    from ..datasets.adult import load_adult

    adult = load_adult("train", local_dir=local_dir)
    X_tr, X_te, Y_tr, Y_te = train_test_split(adult.data, adult.target, test_size=0.2, random_state=seed_split)
    return adult, X_tr, X_te, Y_tr, Y_te


def train_autoencoder(pre, X_train: np.ndarray, epochs: int = 50, seed: int = 0, device: Any = None):
    """The heterogeneous autoencoder of alibi's example (hidden 128, latent 15), trained on ``pre.transform(X)``.

    The network is initialised under ``xrl._utils.init_rng`` (the global RNG is left as it was).
    """
    from ..models.tabular import HeAE, HeAETrainConfig, TabularDecoder, TabularEncoder, train_heae

    with init_rng(seed):
        ae = HeAE(TabularEncoder(pre.model_dim, HIDDEN_AE, LATENT), TabularDecoder(LATENT, HIDDEN_AE, pre.head_dims))
    train_heae(ae, pre.transform(X_train), pre.n_num, pre.cat_sizes_,
               HeAETrainConfig(epochs=epochs, batch_size=128, seed=seed, log_every=0), device=device)
    return ae.eval()


def make_explainer(predictor, ae, pre, train_steps: int, seed: int = 0, **kw):
    """``CounterfactualRLTabular`` with the example's settings (immutables, Age only up, actor/critic hidden 256)."""
    from ..counterfactual.tabular import CounterfactualRLTabular

    # update_every=10: one black-box call per 10 batches (the RandomForest's per-call overhead dominates a step);
    # lr_decay=0.05: learning rates fall linearly to 5%; sparsity_gate=1: no pull back towards the input while the
    # critic expects the counterfactual to fail (docs/tabular.md)
    kw.setdefault("update_every", 10)
    kw.setdefault("lr_decay", 0.05)
    kw.setdefault("sparsity_gate", 1.0)
    return CounterfactualRLTabular(predictor, ae.encoder, ae.decoder, LATENT, pre, pre.inverse_transform,
                                   coeff_sparsity=0.5, coeff_consistency=0.5, immutable_features=IMMUTABLE,
                                   ranges=RANGES, train_steps=train_steps, batch_size=100, seed=seed,
                                   actor_hidden_dim=HIDDEN_RL, critic_hidden_dim=HIDDEN_RL, **kw)


def readable_frames(names: list[str], X: np.ndarray, X_cf: np.ndarray, cls: np.ndarray, cls_cf: np.ndarray,
                    category_map: dict, target_names: list[str]):
    """``(before, after)`` DataFrames with category names instead of codes and an ``Income`` column."""
    import pandas as pd

    def readable(A: np.ndarray) -> pd.DataFrame:
        df = pd.DataFrame(A, columns=names)
        for j, cats in category_map.items():
            df[names[j]] = np.asarray(cats, dtype=object)[np.asarray(A[:, j], dtype=float).astype(int)]
        return df

    before, after = readable(X), readable(X_cf)
    before["Income"] = np.asarray(target_names, dtype=object)[np.asarray(cls).reshape(-1)]
    after["Income"] = np.asarray(target_names, dtype=object)[np.asarray(cls_cf).reshape(-1)]
    return before, after


def html_table(before, after, rows: int = 25) -> str:
    """An HTML ``<table>``: one before/after pair of rows per instance, changed cells with class ``chg``."""
    cols = list(before.columns)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for i in range(min(rows, len(before))):
        b, a = before.iloc[i], after.iloc[i]
        cells_b = "".join(f"<td>{html.escape(str(b[c]))}</td>" for c in cols)
        cells_a = "".join(f"<td class='chg'>{html.escape(str(a[c]))}</td>" if a[c] != b[c]
                          else f"<td>{html.escape(str(a[c]))}</td>" for c in cols)
        body.append(f"<tr class='orig'><th rowspan=2>{i}</th><td>before</td>{cells_b}</tr>"
                    f"<tr class='cf'><td>after</td>{cells_a}</tr>")
    return f"<table><tr><th>row</th><th></th>{head}</tr>" + "".join(body) + "</table>"


def write_tables(out: Path, before, after, rows: int = 25) -> None:
    """``counterfactuals.csv`` (all rows), ``table.html`` and ``table.md`` (the first ``rows``, changes marked)."""
    import pandas as pd

    csv = pd.concat({"orig": before, "cf": after}, axis=1)
    csv.columns = [f"{a}.{b}" for a, b in csv.columns]
    csv.to_csv(out / "counterfactuals.csv", index_label="row")
    cols = list(before.columns)
    md = ["| row | | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for i in range(min(rows, len(before))):
        b, a = before.iloc[i], after.iloc[i]
        md.append(f"| {i} | before | " + " | ".join(str(b[c]) for c in cols) + " |")
        md.append("| | after | " + " | ".join(f"**{a[c]}**" if a[c] != b[c] else str(a[c]) for c in cols) + " |")
    (out / "table.html").write_text(
        f"<!doctype html><meta charset=utf-8><title>CFRL Adult counterfactuals</title><style>{TABLE_STYLE}</style>"
        f"<p>Counterfactuals flipping the black box's income class; changed cells are highlighted. Immutable: "
        f"{', '.join(IMMUTABLE)}; Age may only increase.</p>{html_table(before, after, rows)}\n")
    (out / "table.md").write_text("Changed cells in **bold**.\n\n" + "\n".join(md) + "\n")


def evaluate(cf, pre, predictor, adult, X_tr, X_te, pred_te, out: Path, explain_n: int = 1000, seed: int = 0) -> dict:
    """Flip the black box's class for ``explain_n`` random test rows and run alibi's conditioned example; write the
    tables; return the metrics."""
    from ..metrics.tabular import tabular_cf_metrics

    rng = np.random.default_rng(seed + 7)
    idx = rng.choice(len(X_te), size=min(explain_n, len(X_te)), replace=False)
    Xe, target = X_te[idx], 1 - pred_te[idx]
    t0 = time.perf_counter()
    exp = cf.explain(Xe, Y_t=target, C={}, batch_size=100)
    explain_s = time.perf_counter() - t0
    X_cf = exp.data["cf"]["X"]
    metrics = tabular_cf_metrics(pre, Xe, X_cf, exp.data["cf"]["class"][:, 0], target, immutable_features=IMMUTABLE,
                                 increase_only=["Age"], Z_train=pre.transform(X_tr),
                                 y_train=predictor(X_tr).argmax(1))
    # alibi's example conditioning: >50K rows to <=50K, Age up to +20, Workclass within three values
    cond = {"Age": [0, 20], "Workclass": ["State-gov", "?", "Local-gov"]}
    X_pos = X_te[pred_te == 1][:explain_n]
    exp_c = cf.explain(X_pos, Y_t=np.array([0]), C=cond, batch_size=100)
    A, A_cf = pre.to_codes(X_pos), pre.to_codes(exp_c.data["cf"]["X"])
    wc = adult.feature_names.index("Workclass")
    allowed = [adult.category_map[wc].index(v) for v in cond["Workclass"]]
    cond_metrics = tabular_cf_metrics(pre, X_pos, exp_c.data["cf"]["X"], exp_c.data["cf"]["class"][:, 0],
                                      np.zeros(len(X_pos), int), immutable_features=IMMUTABLE,
                                      increase_only=["Age"])
    cond_metrics["condition_violations"] = int(((A_cf[:, 0] - A[:, 0] > 20) | (A_cf[:, 0] < A[:, 0])
                                                | ((A_cf[:, wc] != A[:, wc]) & ~np.isin(A_cf[:, wc], allowed))).sum())
    out.mkdir(parents=True, exist_ok=True)
    before, after = readable_frames(adult.feature_names, Xe, np.asarray(X_cf), exp.data["orig"]["class"],
                                    exp.data["cf"]["class"], adult.category_map, adult.target_names)
    write_tables(out, before, after)
    return {"explain_rows_per_s": round(len(Xe) / explain_s, 1), "random_test_flip": metrics,
            "alibi_example_pos_to_neg_with_C": {"condition": cond, **cond_metrics}}


def run(out: str | Path, *, train_steps: int = 10_000, ae_epochs: int = 50, explain_n: int = 1000, seed: int = 0,
        device: Any = None, adult_dir: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Run the Adult CFRL job; return its metrics (also written to ``out/metrics.json``).

    Parameters
    ----------
    out : path
        Output folder (created).
    train_steps : int, default 10000
        CFRL training steps (alibi's example setting).
    ae_epochs : int, default 50
        Epochs of the heterogeneous autoencoder.
    explain_n : int, default 1000
        Random test rows whose class is flipped.
    seed : int
        Seed of the black box, the autoencoder, CFRL and the row sample.
    device : str or torch.device, optional
        Default: CPU (these small networks are fastest there).
    adult_dir : path, optional
        A folder holding ``adult.data`` (default: the xrl data cache, filled through pip).
    progress : bool
        tqdm progress bars.
    """
    from ..preprocessing import TabularPreprocessor

    check_scalar("train_steps", train_steps, int, low=1)
    check_scalar("ae_epochs", ae_epochs, int, low=1)
    check_scalar("explain_n", explain_n, int, low=10)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(device)
    t_all = time.perf_counter()
    adult, X_tr, X_te, Y_tr, Y_te = load_split(local_dir=adult_dir)
    t0 = time.perf_counter()
    predictor = black_box(X_tr, Y_tr, adult.category_map, seed)
    pred_te = predictor(X_te).argmax(1)
    black_box_s = time.perf_counter() - t0
    acc = float((pred_te == Y_te).mean())
    pre = TabularPreprocessor(adult.feature_names, adult.category_map).fit(X_tr)
    t0 = time.perf_counter()
    ae = train_autoencoder(pre, X_tr, ae_epochs, seed, device)
    ae_s = time.perf_counter() - t0
    cf = make_explainer(predictor, ae, pre, train_steps, seed, device=device, progress=progress)
    t0 = time.perf_counter()
    cf.fit(X_tr)
    fit_s = time.perf_counter() - t0
    cf.save(out / "explainer")
    report = evaluate(cf, pre, predictor, adult, X_tr, X_te, pred_te, out, explain_n, seed)
    report = {"job": "cfrl adult", "seed": seed, "explain_n": explain_n, "classifier_test_acc": acc, "black_box_train_s": round(black_box_s, 1),
              "heae_epochs": ae_epochs, "heae_train_s": round(ae_s, 1), "train_steps": train_steps,
              "fit_s": round(fit_s, 1), "fit_steps_per_s": round(train_steps / fit_s, 2), **report,
              "total_wall_s": round(time.perf_counter() - t_all, 1)}
    io.save_json(out / "metrics.json", report)
    return report


def summary(metrics: dict[str, Any]) -> str:
    """One line for a terminal."""
    m = metrics["random_test_flip"]
    keys = [k for k in m if "validity" in k]
    val = f"validity {m[keys[0]]:.3f}" if keys else ""
    return f"{val} on {metrics.get('explain_n', '')} rows; fit {metrics['fit_steps_per_s']} steps/s; " \
           f"tables in table.html / counterfactuals.csv"
