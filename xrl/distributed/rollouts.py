"""Rollouts and evaluations over Ray workers, equal to :func:`xrl.agents.collect_trajectories` and
:func:`xrl.agents.evaluate` for the same seed.

The ``num_envs`` environments are cut into ``num_workers`` contiguous shares; each worker holds one copy of the
agent and builds only its share of the environments (environment ``k`` seeded with ``seed + k`` as in the serial
functions). Actions are sampled exactly as the serial functions sample them: the serial policy draws the actions of
all ``num_envs`` environments at once from one generator seeded with ``seed``, so each worker draws the same
``num_envs``-row sample from its own copy of that generator and keeps its rows (the other rows' probabilities are
placeholders; a row's draw depends only on its own probabilities and the generator's position). The environments'
own randomness (sticky actions, restarts) is per environment already.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from .._utils import init_rng, torch_generator
from .._validation import check_scalar, error_message
from ._cluster import Chunk, check_num_workers, check_serializable, connect, run_chunks, stage

__all__ = ["collect_trajectories", "evaluate"]


# ------------------------------------------------------------------------------------------- what travels to workers
@dataclass
class AgentSpec:
    """How a worker gets its copy of the agent: ``"impala"`` (an xrl ImpalaCNN as its JSON config + safetensors
    bytes: no pickled network), ``"module"`` (another torch module, serialized by Ray), ``"factory"`` (a callable
    returning the module, called once per worker) or ``"random"`` (uniform random actions)."""

    kind: str
    payload: Any = None


def agent_spec(agent: Any, *, allow_random: bool) -> AgentSpec:
    from ..models.impala import ImpalaCNN

    if agent is None and allow_random:
        return AgentSpec("random")
    if isinstance(agent, ImpalaCNN):
        from safetensors.torch import save

        state = {k: v.detach().cpu().contiguous() for k, v in agent.state_dict().items()}
        return AgentSpec("impala", (agent.config(), save(state)))
    if isinstance(agent, torch.nn.Module):
        if any(t.device.type != "cpu" for t in (*agent.parameters(), *agent.buffers())):
            import copy

            agent = copy.deepcopy(agent).cpu()  # workers may have no GPU to unpickle CUDA tensors on
        check_serializable("agent", agent)
        return AgentSpec("module", agent)
    if callable(agent):
        check_serializable("agent", agent)
        return AgentSpec("factory", agent)
    accepted = "a torch module returning (logits, value), or a function returning one"
    raise TypeError(error_message("agent", accepted + (" (None: random actions)" if allow_random else ""),
                                  type(agent).__name__))


def build_agent(spec: AgentSpec, device: torch.device) -> torch.nn.Module | None:
    """The worker's copy of the agent, on ``device``, in eval mode."""
    if spec.kind == "random":
        return None
    if spec.kind == "impala":
        from safetensors.torch import load

        from ..io import load_state_strict
        from ..models.impala import ImpalaCNN

        config, data = spec.payload
        with init_rng():  # the weights are overwritten
            agent = ImpalaCNN(**config)
        load_state_strict(agent, load(data), "agent")
    elif spec.kind == "module":
        agent = spec.payload
    else:
        agent = spec.payload()
        if not isinstance(agent, torch.nn.Module):
            raise TypeError(error_message("agent", "a function returning a torch.nn.Module",
                                          f"a function returning {type(agent).__name__}"))
    return agent.to(device).eval()


@dataclass
class EnvSpec:
    """A MinAtar game name (+ keyword arguments), or a function ``make_env(num_envs, seed)`` returning a vectorised
    env whose environment ``k`` is seeded with ``seed + k`` independently of the others."""

    name: str | None = None
    kwargs: dict | None = None
    factory: Callable | None = None

    def make(self, num_envs: int, seed: int) -> Any:
        if self.factory is not None:
            return self.factory(num_envs, seed)
        from ..envs import make_vec_env

        return make_vec_env(self.name, num_envs, seed=seed, **(self.kwargs or {}))

    @property
    def env_id(self) -> str:
        return self.name if self.name is not None else getattr(self.factory, "__name__", type(self.factory).__name__)


def env_spec(env: Any, env_kwargs: dict | None) -> EnvSpec:
    if isinstance(env, str):
        if env.lower() == "coinrun":
            raise ValueError(error_message(
                "env", "an environment whose copies are seeded one by one (a MinAtar game name)", env,
                "procgen draws the levels of all its environments from one generator, so a worker holding "
                "environments 4-7 cannot rebuild them: use xrl.agents.collect_trajectories / evaluate, or pass "
                "make_env(num_envs, seed) if other levels are acceptable"))
        from ..envs.minatar import _canonical_game

        _canonical_game(env)  # a clear error here for an unknown game, not in every worker
        return EnvSpec(name=env, kwargs=dict(env_kwargs or {}))
    if callable(env) and not hasattr(env, "step"):
        if env_kwargs:
            raise ValueError(error_message("env_kwargs", "None with a make_env function (give it its own "
                                           "arguments)", env_kwargs))
        check_serializable("env", env)
        return EnvSpec(factory=env)
    raise TypeError(error_message("env", "a MinAtar game name, or a function make_env(num_envs, seed) returning a "
                                  "vectorised env", type(env).__name__, "an env object cannot be split over "
                                  "workers: pass how to build it"))


def shares(num_envs: int, num_workers: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` shares of ``num_envs`` environments, sizes differing by at most one."""
    bounds = np.linspace(0, num_envs, num_workers + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


# ------------------------------------------------------------------------------------------------------ policies
class RowsOfBatchPolicy:
    """Acts for environments ``[start, stop)`` of ``total`` exactly as :class:`~xrl.envs.rollout.ActorCriticPolicy`
    with ``torch_generator(seed)`` acts for them in a batch of all ``total`` environments."""

    def __init__(self, agent: torch.nn.Module, seed: int, start: int, stop: int, total: int, deterministic: bool,
                 device: torch.device):
        from ..envs.rollout import ActorCriticPolicy

        self.greedy = ActorCriticPolicy(agent, deterministic=True, device=device)  # logits, values, argmax
        self.generator = None if deterministic else torch_generator(seed, device)
        self.start, self.stop, self.total, self.device = start, stop, total, device

    def __call__(self, obs: np.ndarray, live: np.ndarray, firsts: np.ndarray):
        actions, extras = self.greedy(obs, live, firsts)
        if self.generator is None:
            return actions, extras
        logits = torch.from_numpy(extras["logits"]).to(self.device)
        probs = torch.full((self.total, logits.shape[1]), 1.0 / logits.shape[1], device=self.device)
        probs[self.start:self.stop] = torch.softmax(logits, -1)          # [total, A]; other rows: placeholders
        chosen = torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)[self.start:self.stop]
        return chosen.cpu().numpy(), extras


class RowsOfRandomPolicy:
    """Acts for environments ``[start, stop)`` as :class:`~xrl.envs.rollout.RandomPolicy` ``(A, seed)`` acts for them
    in a batch of ``total`` environments (it draws all ``total`` actions per step)."""

    def __init__(self, num_actions: int, seed: int, start: int, stop: int, total: int):
        from ..envs.rollout import RandomPolicy

        self.inner, self.start, self.stop, self.total = RandomPolicy(num_actions, seed), start, stop, total

    def __call__(self, obs: np.ndarray, live: np.ndarray, firsts: np.ndarray):
        actions, extras = self.inner(np.empty(self.total), live, firsts)
        return actions[self.start:self.stop], extras


# ------------------------------------------------------------------------------------------------------- workers
class _RolloutWorker:
    """A Ray actor: one copy of the agent; each chunk is a share of the environments, built, played and closed."""

    def setup(self, agent: AgentSpec, env: EnvSpec, device: str) -> None:
        self.device = torch.device(device)
        self.agent = stage("building the agent", build_agent, agent, self.device)
        self.env = env

    def _policy(self, venv: Any, seed: int, start: int, stop: int, total: int, deterministic: bool) -> Any:
        if self.agent is None:
            return RowsOfRandomPolicy(int(venv.single_action_space.n), seed, start, stop, total)
        return RowsOfBatchPolicy(self.agent, seed, start, stop, total, deterministic, self.device)

    def run(self, job: str, start: int, stop: int, total: int, seed: int, deterministic: bool, length: int) -> Any:
        from ..agents.evaluate import first_episodes
        from ..agents.trajectories import record_trajectories, trajectories_meta

        venv = stage(f"building environments {start}:{stop}", self.env.make, stop - start, seed + start)
        try:
            policy = self._policy(venv, seed, start, stop, total, deterministic)
            if job == "trajectories":
                meta = trajectories_meta(venv, self.env.env_id, self.env.kwargs, seed, deterministic)
                return record_trajectories(venv, policy, length, seed + start, meta, progress=False)
            return first_episodes(venv, policy, length, seed + start, progress=False, env_offset=start)
        finally:
            if hasattr(venv, "close"):
                venv.close()


def _check_common(num_envs: Any, seed: Any, num_workers: Any, device: Any) -> torch.device:
    check_scalar("num_envs", num_envs, int, low=1)
    check_scalar("seed", seed, int)
    check_num_workers(num_workers, num_envs, f"one worker per share of the num_envs={num_envs} environments")
    dev = torch.device(device)  # built in the workers: not checked against this machine's devices
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(error_message("device", "'cpu' or 'cuda'", device))
    return dev


def _run(job: str, agent: AgentSpec, env: EnvSpec, *, num_workers: int, num_envs: int, seed: int,
         deterministic: bool, length: int, device: torch.device, address: str | None, cpus_per_worker: float,
         gpus_per_worker: float, progress: bool, unit: str) -> list[Any]:
    parts = shares(num_envs, num_workers)
    chunks = [Chunk((job, a, b, num_envs, seed, deterministic, length), f"environments {a}:{b}",
                    (b - a) * (length if job == "trajectories" else 1)) for a, b in parts]
    with connect(address) as ray:
        return run_chunks(_RolloutWorker, (agent, env, str(device)), chunks, num_workers=num_workers,
                          cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker, progress=progress,
                          desc=job, unit=unit, ray=ray)


def collect_trajectories(agent: Any, env: Any = "freeway", *, num_workers: int, num_envs: int = 8,
                         num_steps: int = 512, seed: int = 0, deterministic: bool = False,
                         env_kwargs: dict | None = None, address: str | None = None, device: str = "cpu",
                         cpus_per_worker: float = 1, gpus_per_worker: float = 0, progress: bool = True):
    """:func:`xrl.agents.collect_trajectories` over ``num_workers`` Ray workers: the same
    :class:`~xrl.agents.Trajectories` for the same seed.

    Parameters
    ----------
    agent : torch.nn.Module or callable
        ``agent(obs) -> (logits [B, A], value [B])``. An xrl :class:`~xrl.models.ImpalaCNN` travels as its JSON
        config and safetensors weights; another module is serialized by Ray; a function ``make_agent()`` returning
        the module is called once in each worker (for agents that cannot be serialized, e.g. ones holding open
        files).
    env : str or callable
        A MinAtar game name (built with ``env_kwargs``), or a function ``make_env(num_envs, seed)`` returning a
        vectorised env from :mod:`xrl.envs` whose environment ``k`` is seeded with ``seed + k`` independently of
        the others (what makes a split reproducible). ``"coinrun"`` is refused: procgen draws all environments'
        levels from one generator.
    num_workers : int
        Ray workers (actors), at most ``num_envs``; each holds one agent copy and ``num_envs / num_workers``
        environments.
    num_envs, num_steps, seed, deterministic, env_kwargs :
        As in :func:`xrl.agents.collect_trajectories`.
    address : str, optional
        ``None``: start a local Ray instance for this call and shut it down afterwards (several seconds); ``"auto"``
        or ``"host:port"``: connect to a running cluster (``ray start --head``) and disconnect afterwards. If this
        process already called ``ray.init``, that connection is used and left open (pass ``address=None``).
    device : {"cpu", "cuda"}, default "cpu"
        Where each worker runs its agent (``"cuda"`` needs ``gpus_per_worker > 0``). Results equal the serial
        function run on the same kind of device.
    cpus_per_worker, gpus_per_worker : float
        Ray resources reserved by each worker (fractions allowed); the cluster must hold all workers at once.
    progress : bool, default True
        A progress bar of the steps collected (updated as workers finish).

    Returns
    -------
    Trajectories
        ``[num_envs, num_steps, ...]`` arrays, environments in order.

    Raises
    ------
    ImportError
        Ray is not installed (``pip install "xrl[ray]"``).
    ConnectionError
        ``address`` cannot be reached.
    WorkerError
        A worker failed (the share of environments and the worker's error are named); nothing partial is returned.

    Notes
    -----
    Equality with the serial function is exact for actions, observations, rewards and episode boundaries. The
    agent's logits and values are computed on each worker's share of the batch; CPU kernels may round a row
    differently for different batch sizes (in the last bits), so compare those with a tolerance if your batch
    shares differ from the serial batch.

    Examples
    --------
    >>> from xrl.agents import load_bundled_agent
    >>> traj = collect_trajectories(load_bundled_agent("breakout"), "breakout", num_workers=2, num_envs=4,
    ...                             num_steps=64, seed=0)                       # doctest: +SKIP
    """
    check_scalar("num_steps", num_steps, int, low=1)
    dev = _check_common(num_envs, seed, num_workers, device)
    spec_env, spec_agent = env_spec(env, env_kwargs), agent_spec(agent, allow_random=False)
    parts = _run("trajectories", spec_agent, spec_env, num_workers=num_workers, num_envs=num_envs, seed=seed,
                 deterministic=deterministic, length=num_steps, device=dev, address=address,
                 cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker, progress=progress, unit="step")
    return concatenate_trajectories(parts)


def concatenate_trajectories(parts: list[Any]) -> Any:
    """Trajectories of consecutive environment shares -> one (environments in order; the first part's meta)."""
    from ..agents.trajectories import _ARRAY_KEYS, Trajectories

    arrays = {k: np.concatenate([getattr(p, k) for p in parts]) for k in _ARRAY_KEYS}
    objects = None if parts[0].objects is None else np.concatenate([p.objects for p in parts])
    return Trajectories(**arrays, objects=objects, meta=parts[0].meta)


def evaluate(agent: Any, env: Any = "freeway", *, num_workers: int, num_envs: int = 8, num_episodes: int = 100,
             seed: int = 0, deterministic: bool = False, env_kwargs: dict | None = None,
             address: str | None = None, device: str = "cpu", cpus_per_worker: float = 1,
             gpus_per_worker: float = 0, progress: bool = True):
    """:func:`xrl.agents.evaluate` over ``num_workers`` Ray workers: the same :class:`~xrl.agents.EvalResult` as
    ``evaluate(agent, make_vec_env(env, num_envs), num_episodes, seed, deterministic)``.

    Each of the ``num_envs`` environments contributes its first ``num_episodes / num_envs`` episodes (as in the
    serial function); episodes are reported in the serial order (by the step they ended, then environment).

    Parameters
    ----------
    agent : torch.nn.Module, callable or None
        As in :func:`collect_trajectories`; ``None`` plays uniformly random actions (``np.random.default_rng(seed)``,
        as the serial function).
    env, num_workers, num_envs, seed, deterministic, env_kwargs, address, device, cpus_per_worker, \
gpus_per_worker :
        As in :func:`collect_trajectories`.
    num_episodes : int, default 100
        A multiple of ``num_envs``.
    progress : bool, default True
        A progress bar of the episodes (updated as workers finish).

    Returns
    -------
    EvalResult

    Examples
    --------
    >>> result = evaluate(None, "breakout", num_workers=2, num_envs=4, num_episodes=8)   # doctest: +SKIP
    >>> result.mean                                                                      # doctest: +SKIP
    """
    from ..agents.evaluate import episodes_result

    check_scalar("num_episodes", num_episodes, int, low=1)
    dev = _check_common(num_envs, seed, num_workers, device)
    if num_episodes % num_envs:
        raise ValueError(error_message("num_episodes", f"a multiple of num_envs={num_envs} (every environment "
                                       "contributes the same number of first episodes)", num_episodes))
    spec_env, spec_agent = env_spec(env, env_kwargs), agent_spec(agent, allow_random=True)
    parts = _run("evaluate", spec_agent, spec_env, num_workers=num_workers, num_envs=num_envs, seed=seed,
                 deterministic=deterministic, length=num_episodes // num_envs, device=dev, address=address,
                 cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker, progress=progress,
                 unit="env")
    episodes = sorted((e for part in parts for e in part), key=lambda e: (e[0], e[1]))
    return episodes_result(episodes)
