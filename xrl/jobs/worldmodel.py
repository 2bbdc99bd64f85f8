"""DreamerV2-style world models on MinAtar: training (resumable run folder) and example-based explanations of the
latent state (seed 002).

:func:`train` writes ``<run>/checkpoint/`` (the agent, loadable with ``DreamerAgent.load``, and ``train_state.*``:
optimisers, replay buffer, counters, RNG states; ``resume=True`` continues where the last checkpoint stopped),
``progress.jsonl`` and ``evaluation.json``. :func:`explain` writes the seed's figure per rollout (PNG pages), the most
important observations of each rollout and ``explanation.json`` (shapes, timings, top steps, returns, and each NMF
component's best-correlated ground-truth object features).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .. import io
from .._validation import check_scalar, error_message


def make_config(game: str = "freeway", *, pomdp: bool = True, preset: str = "cpu", frames: int | None = None,
                seed: int = 0, **fields: Any):
    """The training config: ``preset="cpu"`` (:func:`~xrl.worldmodel.cpu_config`, about an hour on 2 CPU cores) or
    ``"dreamerv2"`` (the public MinAtar defaults), for ``game``; ``frames`` = frames after the seed phase."""
    from ..envs import make_minatar
    from ..worldmodel import MinAtarConfig, cpu_config

    if preset not in ("cpu", "dreamerv2"):
        raise ValueError(error_message("preset", "'cpu' or 'dreamerv2'", preset))
    probe = make_minatar(game, pomdp=pomdp)
    base = dict(env=game, pomdp=pomdp, obs_shape=tuple(probe.observation_space.shape),
                action_size=int(probe.action_space.n), seed=seed)
    if frames is not None:
        check_scalar("frames", frames, int, low=1)
        base["train_steps"] = frames
    base.update(fields)
    return cpu_config(**base) if preset == "cpu" else MinAtarConfig(**base)


def train(run_dir: str | Path, config, *, resume: bool = True, device: str = "cpu",
          time_limit_minutes: float | None = None, eval_episodes: int = 10, log_every: int = 1000) -> dict[str, Any]:
    """Train (or resume) a world-model agent in ``run_dir``; evaluate it over ``eval_episodes`` episodes.

    Returns (and writes to ``run_dir/evaluation.json``) the frames trained, wall time and mean returns.
    """
    from ..envs import make_minatar
    from ..worldmodel.agent import evaluate
    from ..worldmodel.train import TRAIN_STATE, training_state_dir
    from ..worldmodel.train import train as train_loop

    check_scalar("eval_episodes", eval_episodes, int, low=0)
    run_dir = Path(run_dir)
    t0 = time.time()
    agent = train_loop(config, run_dir, resume=resume, device=device, log_every=log_every,
                       max_minutes=time_limit_minutes)
    seconds = time.time() - t0
    result: dict[str, Any] = {"run_dir": str(run_dir), "env": config.env, "pomdp": config.pomdp,
                              "seconds_this_call": round(seconds, 1)}
    state_dir = training_state_dir(run_dir)
    if state_dir is not None:
        counters = io.load_json(state_dir / f"{TRAIN_STATE}.json").get("counters", {})
        result.update({"frames": counters.get("frame"), "updates": counters.get("updates"),
                       "training_minutes": round(counters.get("seconds", 0.0) / 60, 2)})
    if eval_episodes:
        make_env = lambda: make_minatar(config.env, pomdp=config.pomdp, one_hot_actions=True)  # noqa: E731
        ev = evaluate(agent, make_env, episodes=eval_episodes, seed=10_000)
        result["evaluation"] = {k: v for k, v in ev.items() if k != "returns"}
    io.save_json(run_dir / "evaluation.json", result)
    return result


def resolve_agent(agent: str | Path, device: Any = "cpu", game: str = "freeway", pomdp: bool = True):
    """A world-model agent from a bundled name (``"freeway_pomdp"``), a checkpoint / run folder, or a public
    DreamerV2 ``models_best.pth`` (read with ``torch.load(weights_only=True)``, its MinAtar defaults)."""
    from ..pretrained import PRETRAINED, load_pretrained
    from ..worldmodel.agent import DreamerAgent, Evaluator

    if isinstance(agent, str) and agent in PRETRAINED and PRETRAINED[agent].kind == "worldmodel":
        return load_pretrained(agent, device)
    path = Path(agent)
    if path.suffix in (".pth", ".pt"):
        config = make_config(game, pomdp=pomdp, preset="dreamerv2")
        return Evaluator(config, device).load_model(config, path).agent
    if path.is_dir() and not (path / "agent.json").is_file() and (path / "checkpoint" / "agent.json").is_file():
        path = path / "checkpoint"
    if not (path / "agent.json").is_file():
        names = [n for n, p in PRETRAINED.items() if p.kind == "worldmodel"]
        raise ValueError(error_message("agent", "a bundled world model (" + ", ".join(names) + "), a checkpoint or "
                                       "run folder, or a DreamerV2 .pth file", str(agent)))
    return DreamerAgent.load(path, device).eval()


def explain(agent: str | Path, out: str | Path, *, batch: int = 8, seq_len: int = 50, rank: int = 10,
            seed: int = 212, rows_per_page: int = 10, page_rollouts: int = 1, device: Any = "cpu") -> dict[str, Any]:
    """Seed 002's example-based explanation of a world model's latents; figures and ``explanation.json`` in ``out``.

    Parameters
    ----------
    agent : str or path
        ``"freeway_pomdp"`` (bundled), a checkpoint / run folder, or a DreamerV2 ``models_best.pth``.
    out : path
        Output folder.
    batch, seq_len : int
        Rollouts B and steps per rollout L (env seeds ``seed, seed + 1, ...``).
    rank : int
        NMF rank r (at most the classes per categorical, 20).
    seed : int, default 212
        The seed notebook's env seed.
    rows_per_page : int
        Steps per PNG page of the seed's figure.
    page_rollouts : int
        Rollouts drawn step by step (the others appear in the top-observations figure).
    """
    import matplotlib.pyplot as plt

    from ..envs import make_minatar
    from ..worldmodel.explain import explain_latents, relate_components
    from ..worldmodel.plot import plot_latents, plot_top_observations

    check_scalar("page_rollouts", page_rollouts, int, low=0)
    model = resolve_agent(agent, device)
    cfg = model.config
    env = make_minatar(cfg.env, pomdp=cfg.pomdp, one_hot_actions=True)
    ex = explain_latents(model, env, batch=batch, seq_len=seq_len, rank=rank, seed=seed)
    gt = relate_components(ex)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pngs = []
    for b in range(min(page_rollouts, batch)):
        for p, fig in enumerate(plot_latents(ex, rollout=b, rows_per_page=rows_per_page, out_dir=out)):
            pngs.append(f"latents_rollout{b}_page{p}.png")
            plt.close(fig)
    plt.close(plot_top_observations(ex, out / "top_observations.png"))
    pngs.append("top_observations.png")
    report = {"agent": str(agent), **ex.summary(), "pngs": pngs, "ground_truth": gt.to_dict()}
    io.save_json(out / "explanation.json", report)
    return report


def summary(result: dict[str, Any]) -> str:
    """One line for a terminal."""
    if "pngs" in result:
        best = [b[0] for b in result["ground_truth"].get("best", [])][:3]
        return f"{len(result['pngs'])} figures; NMF {result.get('nmf_seconds', 0):.2f} s; best matches {best}"
    ev = result.get("evaluation", {})
    return (f"{result.get('frames')} frames ({result.get('training_minutes')} min in all); "
            f"mean return {ev.get('mean', float('nan')):.2f} over {ev.get('episodes', 0)} episodes")
