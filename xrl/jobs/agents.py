"""Train IMPALA PPO agents resumably, evaluate them against random actions, and bundle them.

Run-directory layout of :func:`train` (stop it at any time and run the same call again to continue)::

    <run>/checkpoint/      agent.safetensors + agent.json, optimizer.safetensors + optimizer.json, state.json
    <run>/progress.csv     one row per PPO update (charts/..., losses/..., steps per second)
    <run>/tensorboard/     TensorBoard events (when tensorboard is installed)
    <run>/config.json      the PPO config
    <run>/timing.json      wall time of every call, with its command line and thread count

:func:`evaluate` runs the agent and uniformly random actions for the same episodes and writes an evaluation table;
with ``bundle_to`` it also writes a bundle folder (float16 weights, ``agent.json``, ``README.md`` with the commands and
the table), the format of the agents shipped in ``xrl/checkpoints/agents``.
"""
from __future__ import annotations

import json
import time
from itertools import groupby
from pathlib import Path
from typing import Any

import torch

from .. import io
from .._validation import check_scalar, error_message

#: MinAtar settings of the bundled agents: 32 envs x 128 steps, 4 minibatches of 1,024, 3 epochs, the paper's IMPALA
#: width (16/32/32, fc 256)
MINATAR_PPO = dict(num_envs=32, num_steps=128, num_minibatches=4, channels=(16, 32, 32), fc_dim=256,
                   checkpoint_every=10)


def ppo_config(env_id: str, **overrides: Any):
    """The bundled agents' PPO settings for ``env_id`` (a MinAtar game or ``"coinrun"``), with ``overrides``."""
    from ..agents import PPOConfig
    from ..envs import MINATAR_GAMES

    if env_id == "coinrun":
        return PPOConfig.coinrun(checkpoint_every=1, **overrides)
    if env_id not in MINATAR_GAMES:
        raise ValueError(error_message("env_id", "a MinAtar game (" + ", ".join(MINATAR_GAMES) + ") or 'coinrun'",
                                       env_id))
    return PPOConfig(env_id=env_id, **{**MINATAR_PPO, **overrides})


def resolve_agent(agent: str | Path, device: Any = None):
    """An agent from a bundled name (``"freeway"``, ...), a bundle/checkpoint folder or a PPO run folder."""
    from ..agents import load_agent
    from ..pretrained import PRETRAINED, load_pretrained

    if isinstance(agent, str) and agent in PRETRAINED and PRETRAINED[agent].kind == "agent":
        return load_pretrained(agent, device)
    path = Path(agent)
    if not path.is_dir():
        names = [n for n, p in PRETRAINED.items() if p.kind == "agent"]
        raise ValueError(error_message("agent", "a bundled agent name (" + ", ".join(names) + ") or an agent folder",
                                       str(agent), "the folder does not exist"))
    return load_agent(path, device=device)


def train(env_id: str, out: str | Path, *, total_timesteps: int = 3_000_000, seed: int = 1, num_envs: int | None = None,
          num_steps: int | None = None, channels: tuple[int, int, int] | None = None, fc_dim: int | None = None,
          device: str = "cpu", time_limit_minutes: float | None = None, init_from: str | Path | None = None,
          snapshot_every: int = 0, progress: bool = True, command: str | None = None) -> dict[str, Any]:
    """Train (or resume) a PPO agent in the run folder ``out``; return a summary (also appended to timing.json).

    Parameters
    ----------
    env_id : str
        A MinAtar game (``"freeway"``, ``"breakout"``, ...) or ``"coinrun"`` (needs ``xrl[coinrun]``).
    out : path
        The run folder (see the module docstring); an existing checkpoint there is resumed.
    total_timesteps : int
        Environment steps to train for in total (over all calls).
    seed : int
        PPO seed (network initialisation, environments, action sampling).
    num_envs, num_steps, channels, fc_dim : optional
        Override the bundled agents' settings (:data:`MINATAR_PPO`, ``PPOConfig.coinrun``).
    device : str
        Torch device.
    time_limit_minutes : float, optional
        Stop cleanly after the first update past this wall time (checkpoint written; run again to continue).
    snapshot_every : int, default 0
        Also keep the agent every this many frames in ``out/snapshots/<step>/`` (``PPOConfig.snapshot_every``).
    init_from : str or path, optional
        Start a new run from a bundled agent's (or an agent folder's) weights with a fresh optimizer; the network
        width follows that agent. Ignored when ``out`` already holds a checkpoint (that run resumes).
    progress : bool
        tqdm progress bar.
    command : str, optional
        The command line, recorded in timing.json (and in the README of a later bundle).
    """
    from ..agents import train_ppo

    check_scalar("total_timesteps", total_timesteps, int, low=1)
    if time_limit_minutes is not None:
        check_scalar("time_limit_minutes", time_limit_minutes, (int, float), low=0, low_inclusive=False)
    out = Path(out)
    overrides: dict[str, Any] = {"total_timesteps": total_timesteps, "seed": seed, "progress_bar": progress,
                                 "device": str(device), "snapshot_every": snapshot_every}
    for key, value in (("num_envs", num_envs), ("num_steps", num_steps), ("fc_dim", fc_dim)):
        if value:
            overrides[key] = int(value)
    if channels:
        overrides["channels"] = tuple(int(c) for c in channels)
    init_agent = None
    if init_from is not None and not (out / "checkpoint" / "state.json").is_file():
        init_agent = resolve_agent(init_from)
        overrides["channels"], overrides["fc_dim"] = tuple(init_agent.channels), init_agent.fc_dim
        meta_env = getattr(init_agent, "metadata", {}).get("env_id")
        if meta_env is not None and meta_env != env_id:
            raise ValueError(error_message("init_from", f"an agent trained on {env_id!r}", f"{init_from} "
                                           f"(trained on {meta_env!r})", "pick the agent of the same environment"))
    config = ppo_config(env_id, **overrides)
    while (config.num_envs * config.num_steps) % config.num_minibatches:  # minibatches must divide the rollout
        config.num_minibatches -= 1
    if init_agent is not None:
        _keep_init_readme(init_from, out)
    # timing.json is rewritten after every update, so a run stopped by a signal (or a crash) keeps its time
    timing_path = out / "timing.json"
    timing = io.load_json(timing_path) if timing_path.is_file() else {"seconds": 0.0, "runs": []}
    earlier_seconds = timing["seconds"]
    entry = {"command": command or f"xrl.jobs.agents.train({env_id!r}, ...)", "seconds": 0.0,
             "threads": torch.get_num_threads(), "global_step": None,
             **({"init_from": str(init_from)} if init_agent is not None else {})}
    timing["runs"].append(entry)
    t0 = time.time()

    def record(global_step: int) -> float:
        seconds = time.time() - t0
        entry.update(seconds=round(seconds, 1), global_step=int(global_step))
        timing["seconds"] = earlier_seconds + seconds
        io.save_json(timing_path, timing)
        return seconds

    def after_update(row: dict[str, float]) -> bool:
        seconds = record(int(row["global_step"]))
        return time_limit_minutes is None or seconds < time_limit_minutes * 60

    result = train_ppo(config, out, resume=True, callback=after_update, init_agent=init_agent)
    seconds = record(result.global_step)
    last = result.history[-1] if result.history else {}
    return {"env_id": env_id, "out": str(out), "global_step": result.global_step,
            "seconds_this_call": round(seconds, 1), "seconds_total": round(timing["seconds"], 1),
            "recent_episodic_return": last.get("charts/episodic_return")}


def _keep_init_readme(init_from: str | Path, out: Path) -> None:
    """Copy the README of the agent a run starts from (its commands and evaluation) to ``out/init_agent.md``, so
    that a bundle of the run can say how that agent was made, even after the bundle replaces it."""
    from ..agents import BUNDLED_AGENTS, bundled_agent_dir

    folder = bundled_agent_dir(init_from) if str(init_from).lower() in BUNDLED_AGENTS else Path(init_from)
    readme = folder / "README.md"
    if readme.is_file():
        out.mkdir(parents=True, exist_ok=True)
        io.atomic_write_bytes(out / "init_agent.md", readme.read_bytes())


def evaluate(agent: str | Path, out: str | Path, *, episodes: int = 100, unseen_episodes: int = 500,
             num_envs: int | None = None, seed: int = 10_000, bundle_to: str | Path | None = None,
             device: Any = None, command: str | None = None) -> dict[str, Any]:
    """Evaluate an agent and uniformly random actions over the same episodes; optionally bundle the agent.

    Writes ``out/evaluation.json`` and ``out/evaluation.md``. CoinRun agents are also evaluated on the held-out levels
    1,000,000 and up (``unseen_episodes``; training used levels 0-9,999).

    Parameters
    ----------
    agent : str or path
        A bundled agent name, a bundle/checkpoint folder or a PPO run folder.
    out : path
        Where the evaluation files go.
    episodes : int
        Episodes per policy (a multiple of the env count; each env contributes its first episodes, so short episodes
        are not favoured).
    unseen_episodes : int
        CoinRun only: episodes on held-out levels (0 skips them).
    num_envs : int, optional
        Parallel envs (default: 50 for Freeway, whose episodes last 2,500 steps, else 20; capped at ``episodes``).
    seed : int
        Seed of the environments and of action sampling (default 10,000, disjoint from training seeds).
    bundle_to : path, optional
        Write the agent here as a bundle (float16 weights, ``agent.json`` with the evaluation, ``README.md``).
    device : optional
        Torch device.
    command : str, optional
        The command line, for the bundle README.
    """
    from ..agents import evaluate as run_episodes
    from ..agents import load_agent
    from ..agents.checkpoint import write_agent_files
    from ..envs import make_vec_env

    check_scalar("episodes", episodes, int, low=1)
    check_scalar("unseen_episodes", unseen_episodes, int, low=0)
    policy = resolve_agent(agent, device)
    meta = dict(getattr(policy, "metadata", {}))
    config = meta.get("ppo_config", {})
    env_id = meta.get("env_id") or config.get("env_id")
    if env_id is None:
        raise ValueError(error_message("agent", "an agent whose metadata names its environment (env_id)", str(agent)))
    env_kwargs = dict(meta.get("env_kwargs", config.get("env_kwargs", {})))
    n = num_envs or (50 if env_id == "freeway" else 20)
    settings = {"env": (env_kwargs, episodes)}
    if env_id == "coinrun":
        settings = {"train_levels": (env_kwargs, episodes),
                    "unseen_levels": ({**env_kwargs, "num_levels": 500, "start_level": 1_000_000}, unseen_episodes)}
    evals: dict[str, Any] = {}
    for label, (kw, count) in settings.items():
        if count <= 0:
            continue
        n_here = min(n, count)
        count = count - count % n_here
        for who, a in (("agent", policy), ("random", None)):
            t = time.time()
            res = run_episodes(a, make_vec_env(env_id, n_here, seed=seed, **kw), num_episodes=count, seed=seed)
            evals[f"{label}/{who}"] = {**res.summary(), "seconds": round(time.time() - t, 1)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = evaluation_table(evals, n, seed, env_id)
    result = {"agent": str(agent), "env_id": env_id, "global_step": meta.get("global_step"),
              "frames": meta.get("frames", meta.get("global_step")), "evaluation": evals}
    io.save_json(out / "evaluation.json", result)
    (out / "evaluation.md").write_text("\n".join(table) + "\n")
    if bundle_to is not None:
        source = Path(agent) if not (isinstance(agent, str) and not Path(agent).is_dir()) else None
        timing, init_readme = {}, None
        if source is not None:
            run_dir = source.parent if source.name == "checkpoint" else source
            if (run_dir / "timing.json").is_file():
                timing = io.load_json(run_dir / "timing.json")
            if (run_dir / "init_agent.md").is_file():
                init_readme = (run_dir / "init_agent.md").read_text()
        dest = Path(bundle_to)
        obs = torch.from_numpy(make_vec_env(env_id, 8, seed=0, **env_kwargs).reset()[0])
        with io.atomic_directory(dest) as tmp:   # weights, metadata and README: one transaction, one manifest
            seconds = round(timing.get("seconds", meta.get("training_seconds", 0.0)), 1)
            write_agent_files(tmp, policy, {**meta, "env_id": env_id, "env_kwargs": env_kwargs, "evaluation": evals,
                                            "training_seconds": seconds}, half=True)
            with torch.no_grad():   # float16 weights must still give the same policy: compare logits
                diff = (load_agent(tmp)(obs)[0] - policy.cpu()(obs)[0]).abs().max().item()
            readme = _bundle_readme(env_id, env_kwargs, policy, meta, timing, table, diff, command, init_readme)
            io.atomic_write_bytes(tmp / "README.md", readme.encode())
        result.update({"bundle": str(dest), "fp16_max_logit_diff": diff})
    return result


def evaluation_table(evals: dict[str, Any], num_envs: int, seed: int, env_id: str) -> list[str]:
    """Markdown lines: one row per (setting, policy)."""
    lines = [f"Evaluation (episodes split evenly over up to {num_envs} envs, each contributing its first episodes; "
             f"sampled actions; seed {seed}" + ("; unseen_levels = the 500 held-out levels 1,000,000-1,000,499, "
                                                "training used levels 0-9,999" if env_id == "coinrun" else "") + "):",
             "", "| setting | policy | episodes | mean return | std | sem | mean length | success |",
             "|---|---|---|---|---|---|---|---|"]
    for key, v in evals.items():
        label, who = key.split("/")
        lines.append(f"| {label} | {who} | {v['episodes']} | {v['mean_return']:.2f} | {v['std_return']:.2f} | "
                     f"{v['sem_return']:.2f} | {v['mean_length']:.0f} | {v.get('success_rate', '')} |")
    return lines


def _bundle_readme(env_id, env_kwargs, policy, meta, timing, table, diff, command, init_readme=None) -> str:
    runs = timing.get("runs", [])
    threads = sorted({r.get("threads", 1) for r in runs}) or [torch.get_num_threads()]
    frames = meta.get("frames", meta.get("global_step", 0))
    earlier = frames - meta.get("global_step", frames)  # trained before this run, by the init_agent's runs
    lines = [f"# Bundled agent: {env_id}", "",
             f"Environment: `{env_id}` with `{json.dumps(env_kwargs)}`; IMPALA CNN {tuple(policy.channels)}, fc "
             f"{policy.fc_dim}; weights stored as float16 (max |logit| change vs float32: {diff:.2e}).", "",
             f"Trained for {frames:,} environment steps"
             + (f" ({earlier:,} of them by the agent this run started from"
                + (f", `{runs[0]['init_from']}`" if runs and runs[0].get("init_from") else "") + ")"
                if earlier > 0 else "")
             + f"; this run took {timing.get('seconds', 0) / 3600:.2f} h "
             f"(torch {torch.__version__.split('+')[0]}, {' / '.join(map(str, threads))} thread(s)), with these "
             "commands (resumable):", "", "```"]
    calls = [(c, len(list(g))) for c, g in groupby(r["command"] for r in runs)]   # a resumed run repeats its command
    lines += [c + (f"  # {n} calls (resumed)" if n > 1 else "") for c, n in calls]
    lines += [command or "xrl.jobs.agents.evaluate(..., bundle_to=...)", "```", ""]
    lines += table
    if meta.get("ppo_config"):
        lines += ["", "PPO config:", "", "```json", json.dumps(meta["ppo_config"], indent=1), "```"]
    if init_readme:   # how the agent this run started from was made, its headings one level down
        lines += ["", "## The agent this run started from", ""]
        lines += [("#" + line if line.startswith("#") else line) for line in init_readme.strip().splitlines()]
    return "\n".join(lines) + "\n"


def summary(result: dict[str, Any]) -> str:
    """One line for a terminal."""
    if "evaluation" in result:
        return "; ".join(f"{k}: {v['mean_return']:.2f} +- {v['sem_return']:.2f} over {v['episodes']} episodes"
                         for k, v in result["evaluation"].items())
    return f"{result['env_id']}: {result['global_step']:,} steps ({result['seconds_total'] / 60:.1f} min in all)"
