"""``xrl report``: every capability of xrl on bundled defaults, in one folder with one ``index.html``.

Sections (each in its own subfolder, each linked and summarised on the index page):

- ``cfrl_mnist/``: counterfactual images of seed 000 (bundled classifier and autoencoder, CFRL fitted now) and their
  metrics (validity, L1, AE reconstruction error, yNN);
- ``cfrl_adult/``: the Adult counterfactual table of seed 001 with changed cells highlighted, and its metrics;
- ``vision_interface/`` and ``vision_walkthrough/``: the Understanding-RL-Vision interface and the seed-003 figures
  of the bundled MinAtar Breakout agent;
- ``worldmodel/``: the latent explanations of the bundled Freeway POMDP world model (seed 002).

A section that fails is reported on the page (and in ``report.json``) and the others still run.
"""
from __future__ import annotations

import html
import json
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import io
from .._validation import check_choice

SECTIONS = ("cfrl_mnist", "cfrl_adult", "vision", "worldmodel")
#: the bundled MinAtar agent whose interface and figures the report shows
VISION_AGENT = "breakout"


@dataclass
class ReportSettings:
    """Sizes of the report's jobs: :meth:`full` (bundled defaults, ``make demo``) or :meth:`quick` (smoke test)."""

    mnist_train_steps: int = 2500
    mnist_n_explain: int = 1000
    mnist_train_size: int | None = None
    adult_train_steps: int = 5000
    adult_ae_epochs: int = 20
    adult_explain_n: int = 1000
    interface: dict | None = None
    walkthrough_num_obs: int = 512
    walkthrough_episodes: int = 20
    walkthrough_fv_steps: int = 128
    worldmodel_batch: int = 8
    worldmodel_seq_len: int = 50
    worldmodel_rank: int = 10

    @classmethod
    def full(cls) -> "ReportSettings":
        return cls(interface={"trajectories": 4, "steps": 256, "observations": 1024, "obs_every": 16})

    @classmethod
    def quick(cls) -> "ReportSettings":
        return cls(mnist_train_steps=150, mnist_n_explain=200, mnist_train_size=5000, adult_train_steps=300,
                   adult_ae_epochs=3, adult_explain_n=200, walkthrough_num_obs=128, walkthrough_episodes=4,
                   walkthrough_fv_steps=32, worldmodel_batch=2, worldmodel_seq_len=12, worldmodel_rank=5,
                   interface={"trajectories": 2, "steps": 64, "observations": 128, "obs_every": 8})


def build_report(out: str | Path, *, quick: bool = False, sections: tuple[str, ...] = SECTIONS, seed: int = 0,
                 device: Any = None, progress: bool = True, settings: ReportSettings | None = None) -> Path:
    """Run every section and write ``out/index.html`` (returned) and ``out/report.json``.

    Parameters
    ----------
    out : path
        Report folder (created; sections overwrite their own subfolders).
    quick : bool
        Smoke-test sizes (:meth:`ReportSettings.quick`), for tests; the default sizes are ``make demo``'s.
    sections : tuple of str
        A subset of :data:`SECTIONS`.
    seed : int
        Seed of every job.
    device : optional
        Torch device of the jobs.
    progress : bool
        Progress bars.
    settings : ReportSettings, optional
        Explicit sizes (overrides ``quick``).
    """
    for s in sections:
        check_choice("sections", s, SECTIONS)
    cfg = settings or (ReportSettings.quick() if quick else ReportSettings.full())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runners: dict[str, Callable[[Path], dict[str, Any]]] = {
        "cfrl_mnist": lambda d: _mnist(d, cfg, seed, device, progress),
        "cfrl_adult": lambda d: _adult(d, cfg, seed, device, progress),
        "vision": lambda d: _vision(d, cfg, seed, device, progress),
        "worldmodel": lambda d: _worldmodel(d, cfg, seed, device),
    }
    results: dict[str, Any] = {}
    t_all = time.perf_counter()
    for i, name in enumerate(sections, 1):
        t0 = time.perf_counter()
        if progress:
            print(f"xrl report [{i}/{len(sections)}]: {name}", file=sys.stderr, flush=True)
        try:
            results[name] = {"status": "ok", **runners[name](out)}
        except Exception as exc:  # one section's failure must not hide the others: report it on the page
            results[name] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                             "traceback": traceback.format_exc(limit=6)}
            print(f"xrl report: section {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        results[name]["seconds"] = round(time.perf_counter() - t0, 1)
    results["total_seconds"] = round(time.perf_counter() - t_all, 1)
    results["settings"] = "quick" if quick and settings is None else ("custom" if settings else "full")
    io.save_json(out / "report.json", _jsonable(results))
    from .page import write_index

    return write_index(out, results)


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


# -- sections -----------------------------------------------------------------------------------------------------
def _mnist(out: Path, cfg: ReportSettings, seed: int, device, progress: bool) -> dict[str, Any]:
    from ..jobs import cfrl_mnist

    metrics = cfrl_mnist.run(out / "cfrl_mnist", train_steps=cfg.mnist_train_steps, n_explain=cfg.mnist_n_explain,
                             train_size=cfg.mnist_train_size, seed=seed, device=device, progress=progress)
    return {"metrics": metrics}


def _adult(out: Path, cfg: ReportSettings, seed: int, device, progress: bool) -> dict[str, Any]:
    from ..jobs import cfrl_adult

    metrics = cfrl_adult.run(out / "cfrl_adult", train_steps=cfg.adult_train_steps, ae_epochs=cfg.adult_ae_epochs,
                             explain_n=cfg.adult_explain_n, seed=seed, device=device, progress=progress)
    return {"metrics": metrics}


def _vision(out: Path, cfg: ReportSettings, seed: int, device, progress: bool) -> dict[str, Any]:
    from ..jobs import vision
    from ..vision.interface import build_interface

    res: dict[str, Any] = {}
    index = build_interface(VISION_AGENT, out / "vision_interface", seed=seed, device=device, overwrite=True,
                            progress=progress, **(cfg.interface or {}))
    res["interface"] = {"status": "ok", "index": str(Path(index).relative_to(out))}
    walk = vision.walkthrough(VISION_AGENT, out / "vision_walkthrough", num_obs=cfg.walkthrough_num_obs,
                              episodes=cfg.walkthrough_episodes, fv_steps=cfg.walkthrough_fv_steps,
                              score_layers=False, seed=seed, device=device, progress=progress)
    res["walkthrough"] = {k: walk[k] for k in ("agent", "env_id", "layer", "features", "num_obs", "figures", "edit",
                                                "seconds")}
    return res


def _worldmodel(out: Path, cfg: ReportSettings, seed: int, device) -> dict[str, Any]:
    from ..jobs import worldmodel

    report = worldmodel.explain("freeway_pomdp", out / "worldmodel", batch=cfg.worldmodel_batch,
                                seq_len=cfg.worldmodel_seq_len, rank=cfg.worldmodel_rank, seed=212 + seed,
                                device=device or "cpu")
    return {"explanation": {k: report[k] for k in report if k not in ("ground_truth",)},
            "ground_truth": report["ground_truth"]}


def escape(x: Any) -> str:
    return html.escape(str(x))
