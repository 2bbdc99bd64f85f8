"""Which agent and which environment a page explains: resolved and checked before any computation.

An :class:`AgentSource` is a small picklable description (a bundled name, a checkpoint folder or an SB3 ``.zip``,
plus the environment id); :func:`load_model` turns it into the module in each process that needs it, so that work
items can travel to other processes or machines without carrying a model.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xrl._validation import error_message, suggest

__all__ = ["AgentSource", "resolve_agent", "load_model", "check_agent_env", "VALUE_OUTPUT", "POLICY_OUTPUT",
           "env_family"]

#: Layer names of the value head and the policy logits in every xrl agent (ImpalaCNN, SB3Policy).
VALUE_OUTPUT = "fc_value"
POLICY_OUTPUT = "fc_policy"


@dataclass(frozen=True)
class AgentSource:
    """Where an agent comes from and which environment it plays (picklable; no weights inside).

    Attributes
    ----------
    kind : {"bundled", "checkpoint", "sb3"}
    location : str
        The bundled name, or an absolute path to the checkpoint folder / SB3 ``.zip``.
    env_id : str
        A MinAtar game name or ``"coinrun"`` (what :func:`xrl.envs.make_vec_env` builds).
    env_kwargs : tuple of (key, value)
        Extra environment arguments (stored as sorted pairs to stay hashable).
    label : str
        A short name for titles (``"coinrun"``, the folder or file name).
    trust_pickle : bool
        For SB3 files only: load with SB3's own loader, which unpickles the file (runs code from it); see
        :func:`xrl.agents.load_sb3_policy`.
    """

    kind: str
    location: str
    env_id: str
    env_kwargs: tuple = field(default_factory=tuple)
    label: str = ""
    trust_pickle: bool = False

    @property
    def env_kwargs_dict(self) -> dict[str, Any]:
        return dict(self.env_kwargs)


def env_family(env_id: str) -> str:
    """``"coinrun"``, ``"minatar"`` or ``"other"`` (decides how frames are drawn)."""
    from xrl.envs.minatar import MINATAR_GAMES, _canonical_game

    if env_id.lower() == "coinrun":
        return "coinrun"
    try:
        return "minatar" if _canonical_game(env_id) in MINATAR_GAMES else "other"
    except (ValueError, TypeError):
        return "other"


def _canonical_env(env_id: Any, argument: str) -> str:
    from xrl.envs.minatar import MINATAR_GAMES, _canonical_game

    if not isinstance(env_id, str) or not env_id.strip():
        raise TypeError(error_message(argument, "an environment id such as 'breakout' or 'coinrun'", env_id))
    name = env_id.strip()
    if name.lower() in ("coinrun", "procgen:coinrun", "procgen-coinrun-v0"):
        return "coinrun"
    try:
        return _canonical_game(name)
    except ValueError:
        names = list(MINATAR_GAMES) + ["coinrun"]
        raise ValueError(error_message(argument, "a MinAtar game (" + ", ".join(map(repr, MINATAR_GAMES)) +
                                       ", or 'MinAtar/<Game>-v1') or 'coinrun'", env_id,
                                       suggest(name.lower(), names) or "the interface rolls the agent out in an "
                                       "environment xrl can build")) from None


def _sb3_value_head_check(path: Path) -> None:
    """Refuse SB3 files whose policy has no value head, reading only the zip's JSON and its weight names.

    ``policy.pth`` is read with ``weights_only=True`` (tensors only, nothing unpickled)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "data" not in names or "policy.pth" not in names:
                raise ValueError(f"agent: {str(path)!r} is a .zip but not a Stable-Baselines3 save (no 'data' and "
                                 f"'policy.pth' entries; found {sorted(names)[:6]}); pass a file written by "
                                 "model.save(path)")
            data = json.loads(z.read("data"))
            with z.open("policy.pth") as fh:
                state = torch.load(fh, map_location="cpu", weights_only=True)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"agent: {str(path)!r} is not a readable .zip file ({exc}); pass an SB3 model.save() "
                         "file, an xrl checkpoint folder or a bundled agent name") from exc
    except (json.JSONDecodeError, RuntimeError, OSError, KeyError) as exc:
        raise ValueError(f"agent: {str(path)!r} looks damaged ({type(exc).__name__}: {exc}); save the SB3 model "
                         "again") from exc
    policy = data.get("policy_class", {})
    cls = policy.get("__module__", "?") + "." + _class_name(policy) if isinstance(policy, dict) else str(policy)
    keys = set(state) if isinstance(state, dict) else set()
    if not any(k.startswith("value_net.") for k in keys) or not any(k.startswith("action_net.") for k in keys):
        raise ValueError(
            f"agent: the SB3 file {str(path)!r} has no value head (policy class {cls}; weights "
            f"{', '.join(sorted(keys)[:4])}{', ...' if len(keys) > 4 else ''}); the interface needs an actor-critic "
            "policy with a value function and action logits (PPO or A2C, discrete actions), e.g. not DQN, QR-DQN "
            "or SAC")


def _class_name(policy: dict) -> str:
    doc = str(policy.get("__init__", ""))
    # "<function ActorCriticPolicy.__init__ at 0x...>" -> "ActorCriticPolicy"
    if doc.startswith("<function ") and "." in doc:
        return doc[len("<function "):].split(".")[0]
    return "?"


def resolve_agent(agent: Any, env: str | None = None, trust_pickle: bool = False) -> AgentSource:
    """Check ``agent`` / ``env`` and describe them as an :class:`AgentSource` (cheap: nothing is rolled out).

    Parameters
    ----------
    agent : str or path
        A bundled agent name (``"coinrun"``, ``"breakout"``, ``"freeway"``), an xrl checkpoint folder (as written by
        :func:`xrl.agents.save_agent` or a PPO run folder), or a Stable-Baselines3 ``.zip`` (PPO/A2C).
    env : str, optional
        The environment id; required for SB3 files, otherwise taken from the checkpoint's metadata (giving it
        overrides that, e.g. to play a Freeway agent in the Freeway POMDP's shape it must still match).
    trust_pickle : bool, default False
        For SB3 files whose pickles alone describe the network (a custom features extractor): unpickle them with
        SB3's loader. This runs code from the file; only for files you trust.

    Raises
    ------
    ValueError
        Unknown names (with the bundled names and close matches), missing files, SB3 files without a value head, an
        SB3 file without ``env``, unknown environments.
    """
    from xrl.agents.bundled import BUNDLED_AGENTS

    if isinstance(agent, Path):
        agent = str(agent)
    if not isinstance(agent, str) or not agent.strip():
        raise TypeError(error_message("agent", "a bundled agent name (" + ", ".join(map(repr, BUNDLED_AGENTS)) +
                                      "), an xrl checkpoint folder or an SB3 .zip path", agent))
    env_id = None if env is None else _canonical_env(env, "env")
    key = agent.strip().lower()
    path = Path(agent).expanduser()
    if key in BUNDLED_AGENTS and not path.exists():
        from xrl.agents.bundled import bundled_agent_dir

        meta = json.loads((bundled_agent_dir(key) / "agent.json").read_text()).get("metadata", {})
        own_env = _canonical_env(meta.get("env_id", key), "agent metadata env_id")
        env_id = env_id or own_env
        kwargs = meta.get("env_kwargs", {}) if env_id == own_env else {}
        return AgentSource("bundled", key, env_id, tuple(sorted(kwargs.items())), key)
    if path.is_dir():
        folder = path if (path / "agent.json").is_file() else path / "checkpoint"
        if not (folder / "agent.json").is_file():
            raise ValueError(error_message("agent", "an xrl checkpoint folder holding agent.json and "
                                           "agent.safetensors (or a run folder with checkpoint/)", str(path),
                                           "save one with xrl.agents.save_agent or train with xrl.agents.train_ppo"))
        try:
            meta = json.loads((folder / "agent.json").read_text()).get("metadata", {})
        except json.JSONDecodeError as exc:
            raise ValueError(f"agent: {str(folder / 'agent.json')!r} is not valid JSON ({exc}); the checkpoint is "
                             "damaged") from exc
        own_env = _canonical_env(meta["env_id"], "agent metadata env_id") if "env_id" in meta else None
        if env_id is None and own_env is None:
            raise ValueError(error_message("env", "an environment id (the checkpoint's metadata names none)",
                                           None, "pass env='breakout' (or --env breakout)"))
        env_id = env_id or own_env
        kwargs = meta.get("env_kwargs", {}) if env_id == own_env else {}
        return AgentSource("checkpoint", str(folder.resolve()), env_id, tuple(sorted(kwargs.items())),
                           path.resolve().name)
    if path.is_file() or path.with_suffix(".zip").is_file():
        file = path if path.is_file() else path.with_suffix(".zip")
        if file.suffix.lower() != ".zip":
            raise ValueError(error_message("agent", "a bundled agent name, an xrl checkpoint folder or an SB3 .zip",
                                           str(file), "this is a file but not a .zip"))
        _sb3_value_head_check(file)
        if env_id is None:
            raise ValueError(error_message("env", "the environment id of the SB3 agent (SB3 files do not name it)",
                                           None, "pass env='breakout' (or --env breakout)"))
        return AgentSource("sb3", str(file.resolve()), env_id, (), file.stem, bool(trust_pickle))
    names = list(BUNDLED_AGENTS)
    hint = suggest(key, names)
    raise ValueError(error_message(
        "agent", "a bundled agent name (one of " + ", ".join(map(repr, names)) + "), an existing xrl checkpoint "
        "folder or an SB3 .zip file", agent, (hint + " " if hint else "") + "no such name, folder or file"))


def load_model(source: AgentSource, device: Any = None) -> nn.Module:
    """The agent module of ``source`` on ``device``, in eval mode: ``agent(obs) -> (logits [B, A], value [B])``."""
    from xrl._utils import resolve_device

    dev = resolve_device(device)
    if source.kind == "bundled":
        from xrl.agents import load_bundled_agent

        return load_bundled_agent(source.location, device=dev)
    if source.kind == "checkpoint":
        from xrl.agents import load_agent

        return load_agent(source.location, device=dev)
    if source.kind == "sb3":
        from xrl.agents import load_sb3_policy

        last: Exception | None = None
        for algo in ("PPO", "A2C"):
            try:
                return load_sb3_policy(source.location, device=dev, algo=algo, trust_pickle=source.trust_pickle)
            except ValueError as exc:
                last = exc
        raise ValueError(f"agent: could not load {source.location!r} as an SB3 PPO or A2C policy ({last})")
    raise ValueError(error_message("source.kind", "'bundled', 'checkpoint' or 'sb3'", source.kind))


def action_names(model: nn.Module, env: Any) -> list[str]:
    names = getattr(model, "action_names", None) or getattr(env, "action_names", None)
    num = int(getattr(model, "num_actions", 0) or env.single_action_space.n)
    names = list(names or [])
    if len(names) != num:
        names = [f"action {i}" for i in range(num)]
    return [str(n) for n in names]


def check_agent_env(model: nn.Module, source: AgentSource, seed: int = 0) -> dict[str, Any]:
    """Build the environment once and check that the agent takes its observations and has the needed heads.

    Returns ``{"obs_shape", "obs_dtype", "num_actions", "action_names", "channel_names"}``.

    Raises
    ------
    ValueError
        The agent's expected observation shape differs from the environment's (named both, with a remedy), the
        forward pass fails, or the agent lacks ``fc_value`` / ``fc_policy`` layers.
    """
    from xrl.envs import make_vec_env
    from xrl.hooks import layer_names

    names = set(layer_names(model))
    for head, what in ((VALUE_OUTPUT, "value head"), (POLICY_OUTPUT, "policy logits")):
        if head not in names:
            raise ValueError(error_message("agent", f"a module with a {what} layer named {head!r} (xrl agents and "
                                           "SB3 actor-critic policies have one)", type(model).__name__))
    venv = make_vec_env(source.env_id, 1, seed=seed, **source.env_kwargs_dict)
    try:
        obs, _ = venv.reset(seed=seed)
        shape = tuple(int(s) for s in obs.shape[1:])
        expected = getattr(model, "obs_shape", None)
        if expected is not None and tuple(expected) != shape:
            hint = ""
            if tuple(expected) == shape[1:] + shape[:1]:
                hint = " (the same sizes channels-last: the agent was trained on channels-last observations)"
            raise ValueError(
                f"env: the observations of {source.env_id!r} have shape {shape}, but the agent takes "
                f"{tuple(expected)}{hint}; pass the environment the agent was trained on (--env), or an agent "
                "trained on this environment")
        try:
            with torch.no_grad():
                logits, value = model(torch.from_numpy(obs).to(_model_device(model)))
        except (RuntimeError, ValueError, TypeError) as exc:
            raise ValueError(f"env: the agent cannot take the observations of {source.env_id!r} (shape {shape}, "
                             f"dtype {obs.dtype}): its forward pass failed with {type(exc).__name__}: {exc}") from exc
        if tuple(value.shape) != (1,) or logits.ndim != 2:
            raise ValueError(error_message("agent", "agent(obs) -> (logits [B, A], value [B])", type(model).__name__,
                                           f"got shapes {tuple(logits.shape)} and {tuple(value.shape)}"))
        return {"obs_shape": shape, "obs_dtype": str(obs.dtype), "num_actions": int(logits.shape[1]),
                "action_names": action_names(model, venv),
                "channel_names": [str(c) for c in getattr(venv, "channel_names", [])]}
    finally:
        venv.close()


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def frames_rgb(obs: np.ndarray, family: str) -> np.ndarray:
    """Observations ``[N, C, H, W]`` -> ``uint8 [N, H, W, 3]`` as a person sees the game.

    CoinRun frames are the RGB image; MinAtar boards use MinAtar's own colours (a cell shows its highest object
    channel); other observations go through :func:`xrl.render.observation_rgb`.
    """
    obs = np.asarray(obs)
    if family == "minatar":
        from xrl.envs.minatar import minatar_rgb

        return np.stack([minatar_rgb(o) for o in obs]) if len(obs) else np.zeros((0, *obs.shape[2:], 3), np.uint8)
    if obs.dtype == np.uint8 and obs.shape[1] == 3:
        return np.ascontiguousarray(obs.transpose(0, 2, 3, 1))
    from xrl.render import observation_rgb

    return (observation_rgb(obs, "chw") * 255).round().astype(np.uint8)
