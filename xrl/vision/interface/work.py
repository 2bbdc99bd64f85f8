"""The interface's computation as a list of independent work items.

Every item is a small frozen dataclass; :func:`item_inputs` cuts, from the results of earlier stages, exactly the
picklable inputs it needs (numpy arrays, a fitted :class:`~xrl.nmf.NMF`), and :func:`run_work_item` runs it in any
process: it loads the agent from the :class:`~.agent.AgentSource` in the config when no model is passed. The stages::

    1. Rollouts                      the trajectories shown on the page (+ GAE advantages)
       Observations                  the infrequently sampled observations NMF and dataset examples use
    2. NMFFit(layer)                 LayerNMF on value attributions, dataset examples (one per layer)
    3. FeatureVis(layer)             gradient feature visualization of the NMF directions (one per layer)
       Attribution(layer, trajectory)  value and chosen-action-logit attributions, reduced by the NMF

Items of one stage do not depend on each other, so a scheduler may run them anywhere in any order
(:func:`plan_work` lists them; :func:`run_work` runs them here, one after another, each with a progress bar).
"""
from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from torch import nn

from xrl._validation import check_scalar, error_message

from .agent import POLICY_OUTPUT, VALUE_OUTPUT, AgentSource, env_family, frames_rgb, load_model
from .images import png_bytes, rescale_opacity

__all__ = ["InterfaceConfig", "Rollouts", "Observations", "NMFFit", "FeatureVis", "Attribution", "WorkItem",
           "plan_work", "item_inputs", "run_work_item", "run_work", "check_workers", "smoothing_length",
           "ATTRIBUTION_KINDS", "QUANT_RANGE"]

#: Attribution targets on the page: the value head, and the logit of the action the agent took at each frame.
ATTRIBUTION_KINDS = ("value", "action")
#: Maps are stored as int8 over +-QUANT_RANGE display scales (a display scale saturates the picture, so values beyond
#: this range only ever look saturated).
QUANT_RANGE = 8.0


@dataclass(frozen=True)
class InterfaceConfig:
    """Everything a work item needs besides its inputs (picklable; see :func:`~xrl.vision.interface.build_interface`
    for the meaning of each field)."""

    source: AgentSource
    layers: tuple[str, ...]
    trajectories: int = 8
    steps: int = 512
    observations: int = 4096
    obs_every: int = 128
    features: int = 8
    integrate_steps: int = 10
    seed: int = 0
    device: str | None = None
    gamma: float = 0.99
    gae_lambda: float = 0.95
    fv_steps: int = 512
    observation_envs: int = 128
    batch_size: int = 256
    action_attribution: bool = True

    def validate(self) -> None:
        for name in ("trajectories", "steps", "observations", "obs_every", "features", "integrate_steps",
                     "fv_steps", "observation_envs", "batch_size"):
            check_scalar(name, getattr(self, name), int, low=1)
        check_scalar("seed", self.seed, int)
        check_scalar("gamma", self.gamma, (int, float), low=0, high=1)
        check_scalar("gae_lambda", self.gae_lambda, (int, float), low=0, high=1)
        if self.observations < 16:
            raise ValueError(error_message("observations", "at least 16 (dataset thumbnails show the 16 strongest)",
                                           self.observations))
        if not self.layers:
            raise ValueError(error_message("layers", "at least one layer", self.layers))


@dataclass(frozen=True)
class Rollouts:
    """Roll the agent out: ``trajectories`` environments x ``steps`` steps (one more step is played for the value
    that bootstraps GAE at the end)."""

    @property
    def key(self) -> str:
        return "rollouts"


@dataclass(frozen=True)
class Observations:
    """Sample ``observations`` frames every ``obs_every`` steps from ``observation_envs`` environments (in calls of
    8 samples per environment, each with fresh environments seeded ``seed + 100000 + k * observation_envs``, apart
    from the rollouts' seeds)."""

    @property
    def key(self) -> str:
        return "observations"


@dataclass(frozen=True)
class NMFFit:
    """LayerNMF of ``layer`` on value attributions of the sampled observations, and its dataset examples."""

    layer: str

    @property
    def key(self) -> str:
        return f"nmf:{self.layer}"


@dataclass(frozen=True)
class FeatureVis:
    """Gradient feature visualization of ``layer``'s NMF directions."""

    layer: str

    @property
    def key(self) -> str:
        return f"fv:{self.layer}"


@dataclass(frozen=True)
class Attribution:
    """Attributions of one trajectory to ``layer``, reduced to the NMF features (one item per layer x trajectory)."""

    layer: str
    trajectory: int

    @property
    def key(self) -> str:
        return f"attr:{self.layer}:{self.trajectory}"


WorkItem = Rollouts | Observations | NMFFit | FeatureVis | Attribution


def plan_work(config: InterfaceConfig) -> list[list[WorkItem]]:
    """The work items in stages: every item's inputs come from earlier stages only."""
    return [
        [Rollouts(), Observations()],
        [NMFFit(layer) for layer in config.layers],
        [FeatureVis(layer) for layer in config.layers]
        + [Attribution(layer, n) for layer in config.layers for n in range(config.trajectories)],
    ]


def item_inputs(item: WorkItem, results: dict[str, dict]) -> dict[str, Any]:
    """The picklable inputs of ``item``, cut from the results of earlier stages (keyed by ``item.key``)."""
    if isinstance(item, (Rollouts, Observations)):
        return {}
    if isinstance(item, NMFFit):
        return {"observations": results["observations"]["obs"]}
    if isinstance(item, FeatureVis):
        nmf = results[f"nmf:{item.layer}"]
        return {"channel_dirs": nmf["channel_dirs"], "color_stats": results["observations"]["color_stats"]}
    if isinstance(item, Attribution):
        roll = results["rollouts"]
        return {"obs": roll["obs"][item.trajectory], "actions": roll["actions"][item.trajectory],
                "nmf": results[f"nmf:{item.layer}"]["nmf"]}
    raise TypeError(error_message("item", "a work item (Rollouts, Observations, NMFFit, FeatureVis, Attribution)",
                                  type(item).__name__))


def _bar(progress: bool, total: int, desc: str, unit: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not progress, leave=False, dynamic_ncols=True)


def run_work_item(item: WorkItem, config: InterfaceConfig, inputs: dict[str, Any], *, model: nn.Module | None = None,
                  progress: bool = True) -> dict[str, Any]:
    """Run one work item and return its (picklable) result; ``model`` defaults to loading ``config.source``.

    Results hold numpy arrays, PNG bytes and a ``"seconds"`` dict of the wall time of each phase the item ran.
    """
    if model is None:
        model = load_model(config.source, config.device)
    runners = {Rollouts: _run_rollouts, Observations: _run_observations, NMFFit: _run_nmf, FeatureVis: _run_fv,
               Attribution: _run_attribution}
    runner = runners.get(type(item))
    if runner is None:
        raise TypeError(error_message("item", "a work item (Rollouts, Observations, NMFFit, FeatureVis, "
                                      "Attribution)", type(item).__name__))
    from xrl._utils import eval_mode

    cpu0 = time.process_time()
    with eval_mode(model):
        result = runner(item, config, inputs, model, progress)
    result["cpu_seconds"] = time.process_time() - cpu0                # this process's CPU time (all its threads)
    return result


def run_work(config: InterfaceConfig, *, model: nn.Module | None = None, progress: bool = True,
             items: Sequence[Sequence[WorkItem]] | None = None, workers: int | None = None,
             address: str | None = None) -> dict[str, dict]:
    """Run every work item of :func:`plan_work`, stage by stage; results keyed by ``item.key``.

    By default every item runs in this process, one after another. With ``workers`` or ``address``, the items of
    each stage run in parallel on Ray workers (:func:`xrl.distributed.item_workers`, started once for all stages),
    each of which loads the agent once from ``config.source`` (no network is pickled); this process only cuts each
    item's inputs from the earlier stages' results. ``address`` as in :func:`xrl.distributed.cluster` (None: a local
    Ray instance for this call, or the connection this process already holds); with an address and no ``workers``,
    one worker per CPU of the cluster.
    The results equal the serial ones (same seeds; floating-point sums may differ in the last bits where a worker
    uses another number of threads).
    """
    stages = items if items is not None else plan_work(config)
    if workers is not None or address is not None:
        return _run_work_on_ray(config, stages, workers=workers, address=address, progress=progress)
    if model is None:
        model = load_model(config.source, config.device)
    results: dict[str, dict] = {}
    for stage in stages:
        for item in stage:
            results[item.key] = run_work_item(item, config, item_inputs(item, results), model=model,
                                              progress=progress)
    return results


def check_workers(workers: Any, address: Any) -> None:
    """Fail before any work: ``workers`` must be None or an int >= 1, ``address`` None or a non-empty string, and
    Ray must be importable when either is given (the error names the extra, ``xrl[ray]``)."""
    if workers is not None:
        check_scalar("workers", workers, int, low=1)
    if address is not None and (not isinstance(address, str) or not address.strip()):
        raise TypeError(error_message("address", "None (a local Ray instance), 'auto' or 'host:port' of a running "
                                      "Ray cluster", address))
    if workers is not None or address is not None:
        from xrl.distributed._cluster import import_ray

        import_ray()


@dataclass(frozen=True)
class _RemoteItem:
    """What travels to a worker for one item: the item and the inputs that are its own (the inputs every item of
    the stage shares travel once per stage, bound into the function)."""

    item: WorkItem
    inputs: dict

    def __repr__(self) -> str:                                         # named in a WorkerError
        return repr(self.item)


def _worker_setup(source: AgentSource, device: str | None) -> nn.Module:
    """Runs once in each Ray worker: the agent, loaded from its picklable source (no network is pickled)."""
    return load_model(source, device)


def _worker_run(remote: _RemoteItem, model: nn.Module, *, config: InterfaceConfig, shared: dict) -> dict[str, Any]:
    inputs = {**shared, **remote.inputs}
    # arrays from Ray's object store are read-only views (torch.from_numpy warns on them): the item gets its own copy
    inputs = {k: np.array(v) if isinstance(v, np.ndarray) and not v.flags.writeable else v for k, v in inputs.items()}
    return run_work_item(remote.item, config, inputs, model=model, progress=False)


def _split_shared(inputs: list[dict[str, Any]]) -> tuple[dict, list[dict]]:
    """Inputs that are the very same object for every item of a stage (the sampled observations, the colour
    statistics) travel once; the rest travel with their item."""
    if len(inputs) < 2:
        return {}, inputs
    first = inputs[0]
    shared = {k: v for k, v in first.items() if all(k in other and other[k] is v for other in inputs[1:])}
    return shared, [{k: v for k, v in each.items() if k not in shared} for each in inputs]


_STAGE_NAMES = {Rollouts: "rollouts", Observations: "observations", NMFFit: "NMF", FeatureVis: "feature vis",
                Attribution: "attribution"}


def _run_work_on_ray(config: InterfaceConfig, stages: Sequence[Sequence[WorkItem]], *, workers: int | None,
                     address: str | None, progress: bool) -> dict[str, dict]:
    """The stages on one set of Ray workers (started once, the agent loaded once in each); this process cuts each
    item's inputs from the earlier stages' results between stages."""
    from functools import partial

    from xrl.distributed import cluster, item_workers

    check_workers(workers, address)
    stages = [list(stage) for stage in stages if len(stage)]
    gpus = 1 if str(config.device or "cpu").startswith("cuda") else 0  # a worker sees a GPU only if Ray gives one
    results: dict[str, dict] = {}
    with cluster(address) as ray:
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        size = min(workers, max((len(stage) for stage in stages), default=1))
        with item_workers(num_workers=size, setup=partial(_worker_setup, config.source, config.device),
                          gpus_per_worker=gpus, desc="interface workers") as pool:
            for s, stage in enumerate(stages):
                shared, own = _split_shared([item_inputs(item, results) for item in stage])
                kinds = ", ".join(dict.fromkeys(_STAGE_NAMES.get(type(item), type(item).__name__) for item in stage))
                out = pool.map(partial(_worker_run, config=config, shared=shared),
                               [_RemoteItem(item, inputs) for item, inputs in zip(stage, own)], progress=progress,
                               desc=f"stage {s + 1}/{len(stages)} ({kinds}) on {size} workers")
                results.update({item.key: result for item, result in zip(stage, out)})
    return results


# ---------------------------------------------------------------------------------------------------- rollouts
def _run_rollouts(item, config: InterfaceConfig, inputs, model, progress) -> dict[str, Any]:
    from xrl.agents import collect_trajectories, compute_gae

    t0 = time.perf_counter()
    bar = _bar(progress, 1, "rollouts", "batch")
    traj = collect_trajectories(model, config.source.env_id, num_envs=config.trajectories,
                                num_steps=config.steps + 1, seed=config.seed, device=config.device,
                                env_kwargs=config.source.env_kwargs_dict or None, progress=progress)
    bar.update(1)
    bar.close()
    T = config.steps
    values = traj.values                                               # [N, T+1]
    # time-major [T, N] for compute_gae; the extra step's value bootstraps the last one
    adv, _ = compute_gae(traj.rewards[:, :T].T, values[:, :T].T, traj.dones[:, :T].T, next_value=values[:, T],
                         gamma=config.gamma, gae_lambda=config.gae_lambda)
    return {"obs": traj.obs[:, :T], "actions": traj.actions[:, :T], "rewards": traj.rewards[:, :T],
            "firsts": traj.firsts[:, :T], "dones": traj.dones[:, :T], "values": values[:, :T],
            "logits": traj.logits[:, :T], "advantages": np.ascontiguousarray(adv.T), "meta": traj.meta,
            "seconds": {"rollouts": time.perf_counter() - t0}}


def _run_observations(item, config: InterfaceConfig, inputs, model, progress) -> dict[str, Any]:
    from xrl.agents import sample_observations
    from xrl.render.fv import color_statistics

    t0 = time.perf_counter()
    envs = min(config.observation_envs, config.observations)
    per_call = envs * 8                                                # 8 samples per environment and call
    chunks = []
    bar = _bar(progress, config.observations, "observations", "obs")
    k = 0
    while sum(len(c) for c in chunks) < config.observations:
        want = min(per_call, config.observations - sum(len(c) for c in chunks))
        chunks.append(sample_observations(model, config.source.env_id, num_obs=want, every=config.obs_every,
                                          num_envs=min(envs, want), seed=config.seed + 100_000 + k * envs,
                                          device=config.device, env_kwargs=config.source.env_kwargs_dict or None,
                                          progress=progress))
        bar.update(want)
        k += 1
    bar.close()
    obs = np.concatenate(chunks)
    return {"obs": obs, "color_stats": color_statistics(_as_unit_float(obs)),
            "seconds": {"rollouts": time.perf_counter() - t0}}


def _as_unit_float(obs: np.ndarray) -> np.ndarray:
    """Observations as the model sees them, in [0, 1] floats (uint8 frames are divided by 255 by xrl agents)."""
    return obs.astype(np.float32) / 255.0 if obs.dtype == np.uint8 else obs.astype(np.float32)


# ---------------------------------------------------------------------------------------------------- NMF
def _run_nmf(item: NMFFit, config: InterfaceConfig, inputs, model, progress) -> dict[str, Any]:
    from xrl.vision import LayerNMF

    obs = inputs["observations"]
    family = env_family(config.source.env_id)
    bar = _bar(progress, 1 + 2 * config.features, f"NMF {item.layer}", "step")
    t0 = time.perf_counter()
    full = frames_rgb(obs, family).astype(np.float32).transpose(0, 3, 1, 2) / 255.0   # [N, 3, H, W] for the patches
    layer_nmf = LayerNMF(model, item.layer, obs, features=config.features, attr_layer_name=VALUE_OUTPUT,
                         attr_opts={"integrate_steps": config.integrate_steps}, obs_full=full,
                         batch_size=config.batch_size, seed=config.seed, device=config.device, progress=progress)
    bar.update(1)
    t1 = time.perf_counter()
    thumbnails, spatial = [], []
    grid = 3 if max(obs.shape[-2:]) <= 16 else 4                      # 3 x 3 patches of a 10 x 10 board read better
    for f in range(config.features):
        thumb, _ = layer_nmf.vis_dataset_thumbnail(f, num_mult=grid, expand_mult=4)
        thumbnails.append(png_bytes(rescale_opacity(np.moveaxis(thumb, 0, -1))))
        bar.update(1)
        mosaic, _ = layer_nmf.vis_dataset(f, subdiv_mult=1, expand_mult=4)
        spatial.append(png_bytes(rescale_opacity(np.moveaxis(mosaic, 0, -1))))
        bar.update(1)
    t2 = time.perf_counter()
    bar.close()
    acts = layer_nmf.acts_reduced                                       # [N, h, w, F]
    rf = layer_nmf.receptive_field
    return {"nmf": layer_nmf.nmf, "channel_dirs": np.asarray(layer_nmf.channel_dirs, np.float32),
            "activation_shape": [int(layer_nmf.channel_dirs.shape[1]), int(acts.shape[1]), int(acts.shape[2])],
            "reconstruction_error": float(getattr(layer_nmf.nmf, "reconstruction_err_", float("nan")) or 0.0),
            "receptive_field": {"stride": list(rf.stride), "offset": list(rf.offset), "size": list(rf.size)},
            "thumbnails": thumbnails, "dataset": spatial,
            "seconds": {"nmf": t1 - t0, "dataset_examples": t2 - t1}}


# ---------------------------------------------------------------------------------------------------- feature vis
def _run_fv(item: FeatureVis, config: InterfaceConfig, inputs, model, progress) -> dict[str, Any]:
    from xrl.render.fv import visualize_directions

    t0 = time.perf_counter()
    dirs = inputs["channel_dirs"]
    stats = inputs["color_stats"]
    shape = tuple(stats.shape)
    images = visualize_directions(model, item.layer, dirs, shape, color_stats=stats, steps=config.fv_steps,
                                  seed=config.seed, device=config.device, progress=progress,
                                  desc=f"feature vis {item.layer}")                # [F, C, H, W] in obs units
    family = env_family(config.source.env_id)
    pngs = [png_bytes(_fv_rgb(img, family)) for img in images]
    return {"images": pngs, "seconds": {"feature_visualization": time.perf_counter() - t0}}


def _fv_rgb(img: np.ndarray, family: str) -> np.ndarray:
    """A feature visualization [C, H, W] (observation units, [0, 1]) as RGB [H, W, 3] in [0, 1]."""
    if img.shape[0] == 3:
        return np.moveaxis(img, 0, -1)
    if family == "minatar":
        from xrl.envs.minatar import _PALETTE

        cols = _PALETTE[np.arange(img.shape[0]) % len(_PALETTE)].astype(np.float32) / 255.0   # [C, 3]
        return np.clip(np.tensordot(np.moveaxis(img, 0, -1), cols, axes=1), 0, 1)
    from xrl.render import observation_rgb

    return observation_rgb(img, "chw")


# ---------------------------------------------------------------------------------------------------- attribution
def smoothing_length(h: int, w: int) -> int:
    """Side of the ``norm_filter`` disc that smooths attribution maps of an ``h x w`` layer: the paper's 15 units
    on a 32-wide layer, scaled to the layer's width (odd); maps under 8 wide are not smoothed (1), since their units
    already cover a large part of the frame (the page draws them as blocks)."""
    if max(h, w) < 8:
        return 1
    n = max(1, int(round(15 * max(h, w) / 32)))
    return n if n % 2 == 1 else n + 1


def reduce_attribution(attr: np.ndarray, nmf) -> tuple[np.ndarray, np.ndarray]:
    """Attribution ``[T, C, h, w]`` -> (per-feature maps ``[T, h, w, F]``, residual map ``[T, h, w]``).

    As the original interface and seed 003: the positive and negative parts are projected on the NMF directions
    separately and subtracted, and each feature is multiplied by the sum of its direction (the directions' scale is
    arbitrary); the residual is what the features leave of the attribution summed over channels, so that
    ``maps.sum(-1) + residual == attr.sum(1)`` at every position.
    """
    T, C, h, w = attr.shape
    flat = np.ascontiguousarray(np.moveaxis(attr, 1, -1).reshape(-1, C), np.float32)   # [T*h*w, C]
    red = nmf.transform(np.maximum(flat, 0)) - nmf.transform(np.maximum(-flat, 0))    # [T*h*w, F]
    norms = np.asarray(nmf.components_, np.float32).sum(-1)                          # [F]
    red = red * norms[None]
    residual = flat.sum(-1) - red.sum(-1)
    F = red.shape[-1]
    return red.reshape(T, h, w, F).astype(np.float32), residual.reshape(T, h, w).astype(np.float32)


def _attribute(model, layer, obs, actions, kind, config: InterfaceConfig, bar) -> np.ndarray:
    from xrl.vision import get_attr

    chunk = 64
    out = []
    for s in range(0, len(obs), chunk):
        o = obs[s:s + chunk]
        if kind == "value":
            out.append(get_attr(model, VALUE_OUTPUT, layer, o, integrate_steps=config.integrate_steps,
                                batch_size=chunk * config.integrate_steps, device=config.device))
        else:
            a = actions[s:s + chunk]
            part = None
            for action in np.unique(a):
                idx = np.flatnonzero(a == action)
                got = get_attr(model, POLICY_OUTPUT, layer, o[idx], integrate_steps=config.integrate_steps,
                               score_fn=lambda logits, _a=int(action): logits[:, _a],
                               batch_size=chunk * config.integrate_steps, device=config.device)
                if part is None:
                    part = np.zeros((len(o),) + got.shape[1:], np.float32)
                part[idx] = got
            out.append(part)
        bar.update(len(o))
    return np.concatenate(out)


def quantize_maps(maps: np.ndarray) -> tuple[np.ndarray, float]:
    """Signed maps ``[T, h, w, K]`` -> (int8 codes, display scale).

    The display scale is the median over frames of each frame's largest feature value (the original interface's
    normalisation: half the frames reach full brightness somewhere); codes cover +-``QUANT_RANGE`` display scales.
    """
    peak = np.abs(maps[..., :-1]).reshape(len(maps), -1).max(1) if maps.shape[-1] > 1 else np.abs(maps).max((1, 2, 3))
    scale = float(np.median(peak))
    if not scale > 0:
        scale = float(np.abs(maps).max())
    if not scale > 0:
        scale = 1.0
    codes = np.clip(np.round(maps / (scale * QUANT_RANGE) * 127.0), -127, 127).astype(np.int8)
    return codes, scale


def _run_attribution(item: Attribution, config: InterfaceConfig, inputs, model, progress) -> dict[str, Any]:
    t0 = time.perf_counter()
    obs, actions, nmf = inputs["obs"], inputs["actions"], inputs["nmf"]
    kinds = ATTRIBUTION_KINDS if config.action_attribution else ATTRIBUTION_KINDS[:1]
    bar = _bar(progress, len(obs) * len(kinds), f"attribution {item.layer} #{item.trajectory}", "frame")
    out: dict[str, Any] = {}
    for kind in kinds:
        attr = _attribute(model, item.layer, obs, actions, kind, config, bar)    # [T, C, h, w]
        maps, residual = reduce_attribution(attr, nmf)
        stacked = np.concatenate([maps, residual[..., None]], -1)                # [T, h, w, F+1]
        codes, scale = quantize_maps(stacked)
        out[kind] = {"totals": maps.sum((1, 2)), "residual": residual.sum((1, 2)), "total": attr.sum((1, 2, 3)),
                     "scale": scale, "shape": list(codes.shape),
                     "codes": zlib.compress(codes.tobytes(), 6)}
    bar.close()
    out["seconds"] = {"attribution": time.perf_counter() - t0}
    return out


@dataclass
class _Timer:
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, value: float) -> None:
        self.seconds[key] = self.seconds.get(key, 0.0) + float(value)


def phase_seconds(results: dict[str, dict], layers: Sequence[str]) -> dict[str, Any]:
    """Wall time per phase summed over items (rollouts, NMF per layer, attribution, dataset examples, feature
    visualization), and the process CPU time per phase under ``"cpu"`` (an item's CPU time is split over its phases
    in proportion to their wall time); on a busy machine the CPU time is the better measure of the work."""
    wall, cpu = _Timer(), _Timer()
    per_layer = {}
    for key, res in results.items():
        secs = res.get("seconds", {})
        total = sum(secs.values()) or 1.0
        for phase, value in secs.items():
            if phase == "nmf":
                per_layer[key.split(":", 1)[1]] = round(float(value), 3)
            wall.add(phase, value)
            cpu.add(phase, res.get("cpu_seconds", 0.0) * value / total)
    out: dict[str, Any] = {k: round(v, 3) for k, v in wall.seconds.items()}
    out["nmf_per_layer"] = {layer: per_layer.get(layer) for layer in layers}
    out["cpu"] = {k: round(v, 3) for k, v in cpu.seconds.items()}
    return out
