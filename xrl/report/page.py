"""The report's ``index.html``: one self-contained page (style inline, figures as relative links) per report folder."""
from __future__ import annotations

import html
import math
from importlib import resources
from pathlib import Path
from typing import Any


def _e(x: Any) -> str:
    return html.escape(str(x))


def _num(v: Any, digits: int = 3) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return _e(v)
    if isinstance(v, float) and math.isnan(v):
        return "n/a"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:,.{digits}f}" if abs(v) < 1 else f"{v:,.{max(digits - 2, 1)}f}"


def _kv_table(rows: list[tuple[str, Any]]) -> str:
    return "<table class=kv>" + "".join(f"<tr><th>{_e(k)}</th><td>{_num(v)}</td></tr>" for k, v in rows) + "</table>"


def _figure(src: str, caption: str, width: str | None = None) -> str:
    style = f" style='max-width:{width}'" if width else ""
    return (f"<figure><a href='{_e(src)}'><img src='{_e(src)}' alt='{_e(caption)}'{style}></a>"
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _failed(res: dict[str, Any]) -> str:
    return (f"<div class=error><b>This section failed:</b> {_e(res.get('error'))}<pre>{_e(res.get('traceback', ''))}"
            "</pre></div>")


def _mnist(out: Path, res: dict[str, Any]) -> str:
    m = res["metrics"]
    r, t, fit, models = m.get("random_targets", {}), m.get("target_2", {}), m.get("cfrl_fit", {}), m["models"]
    rows = [("classifier test accuracy", models.get("classifier_test_accuracy")),
            ("autoencoder test BCE", models.get("ae_test_bce")),
            ("CFRL training steps", fit.get("train_steps")), ("fit time (s)", fit.get("wall_s")),
            (f"validity, random targets ({r.get('n')} test images)", r.get("validity")),
            (f"validity, target 2 ({t.get('n')} test images)", t.get("validity")),
            ("mean L1 of the change (random targets; pixels in [0, 1])", r.get("l1_mean")),
            ("mean L0 (pixels changed by > 0.001)", r.get("l0_mean")),
            ("AE reconstruction MSE of the counterfactuals", r.get("ae_reconstruction_mse_mean")),
            ("yNN (k = 5): neighbours of the predicted class", r.get("ynn_k5_mean")),
            ("explain speed (images/s)", r.get("explain_images_per_s"))]
    figs = [_figure("cfrl_mnist/random_targets.png", "Random targets: originals, counterfactuals (green: the "
                    "classifier predicts the target), and what changed"),
            _figure("cfrl_mnist/target2.png", "The seed's call: every image towards class 2")]
    if (out / "cfrl_mnist" / "training.png").is_file():
        figs.append(_figure("cfrl_mnist/training.png", "Reward and losses during CFRL training"))
    return (_kv_table(rows) + "".join(figs) + "<p>Files: <a href='cfrl_mnist/metrics.json'>metrics.json</a>, "
            "<a href='cfrl_mnist/train_log.jsonl'>train_log.jsonl</a>, the saved explainer in "
            "<code>cfrl_mnist/explainer/</code> (<code>CounterfactualRL.load(path, predictor)</code>).</p>")


def _adult(out: Path, res: dict[str, Any]) -> str:
    m = res["metrics"]
    f, c = m.get("random_test_flip", {}), m.get("alibi_example_pos_to_neg_with_C", {})
    rows = [("black box (RandomForest) test accuracy", m.get("classifier_test_acc")),
            ("CFRL training steps", m.get("train_steps")), ("fit time (s)", m.get("fit_s")),
            (f"validity: flip the class of {f.get('n')} random test rows", f.get("validity")),
            ("categorical features changed per row", f.get("categorical_changed_mean")),
            ("immutable-feature / range violations", f"{f.get('immutability_violations')} / "
                                                     f"{f.get('range_violations')}"),
            (f"validity with alibi's example condition (Age +0..20, Workclass in {c.get('condition', {}).get('Workclass')})",
             c.get("validity")),
            ("condition violations", c.get("condition_violations"))]
    table = ""
    csv = out / "cfrl_adult" / "counterfactuals.csv"
    if csv.is_file():
        import pandas as pd

        from ..jobs.cfrl_adult import html_table

        df = pd.read_csv(csv, index_col=0, nrows=12)
        before = df[[c for c in df.columns if c.startswith("orig.")]].rename(columns=lambda c: c[5:])
        after = df[[c for c in df.columns if c.startswith("cf.")]].rename(columns=lambda c: c[3:])
        table = ("<p>The first rows: each person before and after, changed cells highlighted (Marital Status, "
                 "Relationship, Race and Sex are immutable; Age may only increase).</p><div class=scroll>"
                 + html_table(before, after, rows=12) + "</div>")
    return (_kv_table(rows) + table + "<p>Files: <a href='cfrl_adult/table.html'>table.html</a> (25 rows), "
            "<a href='cfrl_adult/counterfactuals.csv'>counterfactuals.csv</a> (every row), "
            "<a href='cfrl_adult/metrics.json'>metrics.json</a>.</p>")


def _vision(out: Path, res: dict[str, Any]) -> str:
    parts = []
    itf = res.get("interface", {})
    if itf.get("status") == "ok":
        parts.append(f"<p class=big><a href='{_e(itf['index'])}'>Open the interactive interface</a> (trajectories, "
                     "attribution per NMF direction, feature visualization; one offline page).</p>")
    else:
        parts.append(f"<p class=note>Interface: {_e(itf.get('status'))} ({_e(itf.get('error'))}).</p>")
    w = res.get("walkthrough")
    if w:
        edit = w.get("edit", {})
        roll = edit.get("rollouts", {})
        rows = [("agent", f"{w['agent']} ({w['env_id']})"), ("NMF layer", w["layer"]),
                ("NMF directions / observations", f"{w['features']} / {w['num_obs']}"),
                ("edited direction", f"{edit.get('direction')} (best match of the {edit.get('target_object', '?')}, "
                                     f"r = {_num(edit.get('direction_corr_with_target'), 2)})")]
        for who in ("original", "edited"):
            if who in roll:
                v = roll[who]
                rows.append((f"{who} agent: return / episode length ({v.get('episodes')} episodes)",
                             f"{_num(v.get('return_mean'), 2)} / {_num(v.get('length_mean'), 1)}"))
        parts.append(_kv_table(rows))
        for key in ("observations", "attribution", "attribution_edited", "feature_vis", "thumbnails", "dataset_vis"):
            if key in w["figures"]:
                src, _, caption = w["figures"][key].partition(": ")
                parts.append(_figure(f"vision_walkthrough/{src}", caption))
    return "".join(parts)


def _worldmodel(out: Path, res: dict[str, Any]) -> str:
    ex = res["explanation"]
    best = res.get("ground_truth", {}).get("best", [])
    rows = [("rollouts x steps", f"{ex['batch']} x {ex['seq_len']}"),
            ("latent", f"{ex['categoricals']} categoricals x {ex['classes']} classes"),
            ("NMF rank / relative reconstruction error", f"{ex['rank']} / {_num(ex['reconstruction_error'], 3)}"),
            ("returns of the rollouts", ", ".join(_num(r, 0) for r in ex["returns"]))]
    match = "".join(f"<tr><th>component {j}</th><td>{_e(b[0]['feature'])}</td><td>{_num(b[0]['corr'], 2)}</td></tr>"
                    for j, b in enumerate(best) if b)
    figs = [_figure(f"worldmodel/{p}", "Most important observations of each rollout" if p.startswith("top")
                    else f"The seed's figure, {p.split('_', 1)[1].removesuffix('.png').replace('_', ' ')}: frame, "
                    "categoricals with entropy, sampled state, activity", width="760px") for p in ex["pngs"]]
    return (_kv_table(rows) + "<p>Each NMF component's best-correlated ground-truth feature:</p><table class=kv>"
            + match + "</table>" + "".join(figs) + "<p>Files: <a href='worldmodel/explanation.json'>"
            "explanation.json</a>.</p>")


SECTION_PAGES = {
    "cfrl_mnist": ("Counterfactuals for images (CFRL, MNIST)", _mnist,
                   "What is the smallest change to a digit that makes the classifier see another class? A DDPG "
                   "actor learns it once in the autoencoder's latent space, then answers for any image and target "
                   "in one forward pass (seed 000)."),
    "cfrl_adult": ("Counterfactuals for tables (CFRL, UCI Adult)", _adult,
                   "What would this person have to change for the income classifier to answer differently, without "
                   "touching immutable attributes (seed 001)?"),
    "vision": ("Understanding RL Vision (MinAtar Breakout)", _vision,
               "What does the agent look at? NMF of the value-function attributions at a layer, with dataset and "
               "feature visualizations, and an edit that blinds the agent to one direction (seed 003)."),
    "worldmodel": ("World-model latents (DreamerV2, Freeway POMDP)", _worldmodel,
                   "Which observations drive the world model's categorical latents? NMF of the posterior "
                   "activations over rollouts (seed 002)."),
}


def write_index(out: Path, results: dict[str, Any]) -> Path:
    """Write ``out/index.html`` for the results of :func:`xrl.report.build_report`; return its path."""
    import xrl

    css = resources.files("xrl.report").joinpath("style.css").read_text()
    toc, body = [], []
    for name, (title, render, intro) in SECTION_PAGES.items():
        if name not in results:
            continue
        res = results[name]
        status = res.get("status")
        toc.append(f"<li><a href='#{name}'>{_e(title)}</a> <span class={status}>{_e(status)}</span> "
                   f"<small>{_num(res.get('seconds'), 0)} s</small></li>")
        try:
            content = render(out, res) if status == "ok" else _failed(res)
        except Exception as exc:  # a page bug must not lose the other sections
            content = _failed({"error": f"rendering the section failed: {type(exc).__name__}: {exc}"})
        body.append(f"<section id={name}><h2>{_e(title)}</h2><p class=intro>{_e(intro)}</p>{content}</section>")
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>xrl report</title><style>{css}</style></head>"
            f"<body><h1>xrl report</h1><p>Every capability of xrl {_e(xrl.__version__)} on its bundled models "
            f"({_e(results.get('settings'))} settings, {_num(results.get('total_seconds'), 0)} s). Machine-readable: "
            "<a href='report.json'>report.json</a>.</p><ol class=toc>" + "".join(toc) + "</ol>" + "".join(body)
            + "</body></html>\n")
    path = out / "index.html"
    path.write_text(page)
    return path
