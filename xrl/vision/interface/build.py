"""``build_interface``: one call from an agent to an interactive offline page."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import torch

from xrl._validation import check_scalar, error_message

from .agent import check_agent_env, env_family, load_model, resolve_agent
from .layers import check_layers, layer_shapes
from .page import assemble_page, check_output_folder, write_page
from .work import InterfaceConfig, check_workers, phase_seconds, run_work

__all__ = ["build_interface", "build_interface_timed", "prepare_config", "gae_parameters"]


def gae_parameters(model: Any, source) -> tuple[float, float]:
    """(gamma, lambda) the agent was trained with, when its checkpoint says (xrl PPO metadata, SB3 data), else
    (0.99, 0.95)."""
    meta = getattr(model, "metadata", None) or {}
    ppo = meta.get("ppo_config", {}) if isinstance(meta, dict) else {}
    gamma, lam = ppo.get("gamma"), ppo.get("gae_lambda")
    if source.kind == "sb3":
        import json
        import zipfile

        try:
            with zipfile.ZipFile(source.location) as z:
                data = json.loads(z.read("data"))
            gamma, lam = data.get("gamma", gamma), data.get("gae_lambda", lam)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            pass
    return float(gamma if isinstance(gamma, (int, float)) else 0.99), float(lam if isinstance(lam, (int, float))
                                                                              else 0.95)


def prepare_config(agent: Any, *, env: str | None = None, trajectories: int = 8, steps: int = 512,
                   observations: int = 4096, obs_every: int = 128, features: int = 8,
                   layers: Sequence[str] | str | None = None, integrate_steps: int = 10, seed: int = 0,
                   device: Any = None, fv_steps: int = 512, action_attribution: bool = True,
                   trust_pickle: bool = False) -> tuple[InterfaceConfig, torch.nn.Module, dict[str, Any]]:
    """Check every argument, load the agent and check it against its environment; nothing is computed yet.

    Returns ``(config, model, info)``; raises ``ValueError``/``TypeError`` naming the argument for bad input.
    """
    for name, value in (("trajectories", trajectories), ("steps", steps), ("observations", observations),
                        ("obs_every", obs_every), ("features", features), ("integrate_steps", integrate_steps),
                        ("fv_steps", fv_steps)):
        check_scalar(name, value, int, low=1)
    check_scalar("seed", seed, int, low=0)
    if observations < 16:
        raise ValueError(error_message("observations", "at least 16 (dataset thumbnails show the 16 strongest)",
                                       observations))
    from xrl._utils import resolve_device

    dev = resolve_device(device)
    source = resolve_agent(agent, env, trust_pickle=trust_pickle)
    model = load_model(source, dev)
    info = check_agent_env(model, source, seed=seed)
    info["family"] = env_family(source.env_id)
    example = torch.zeros((1, *info["obs_shape"]), dtype=torch.uint8 if info["obs_dtype"] == "uint8"
                          else torch.float32, device=dev)
    chosen = check_layers(model, layers, example)
    shapes = layer_shapes(model, example)
    for layer in chosen:
        channels = shapes[layer][0]
        if features > channels:
            raise ValueError(error_message("features", f"at most {channels} (the channels of layer {layer!r})",
                                           features, "choose fewer features or a wider layer"))
    gamma, lam = gae_parameters(model, source)
    config = InterfaceConfig(source=source, layers=tuple(chosen), trajectories=trajectories, steps=steps,
                             observations=observations, obs_every=obs_every, features=features,
                             integrate_steps=integrate_steps, seed=seed, device=None if device is None else str(dev),
                             gamma=gamma, gae_lambda=lam, fv_steps=fv_steps, action_attribution=action_attribution)
    config.validate()
    return config, model, info


def build_interface_timed(agent: Any, out: str | Path, *, overwrite: bool = False, progress: bool = True,
                          inline_images: bool | None = None, workers: int | None = None, address: str | None = None,
                          **kwargs: Any) -> tuple[Path, dict[str, Any]]:
    """:func:`build_interface` that also returns the wall time of each phase and the output size (for benchmarks).

    With ``workers``/``address`` the phases' times are summed over the workers' items (work, not wall time), and
    ``"work"`` is the wall time of all work items, Ray's start-up included."""
    out = Path(out)
    check_output_folder(out, overwrite)                                # fail before any computation
    check_workers(workers, address)
    t0, c0 = time.perf_counter(), time.process_time()
    config, model, info = prepare_config(agent, **kwargs)
    t_prep = time.perf_counter() - t0
    t_work = time.perf_counter()
    results = run_work(config, model=model, progress=progress, workers=workers, address=address)
    t_work = time.perf_counter() - t_work
    timing = phase_seconds(results, config.layers)
    timing["setup"] = round(t_prep, 3)
    timing["work"] = round(t_work, 3)
    timing["workers"] = workers if workers is not None else (None if address is None else "cluster")
    t1, c1 = time.perf_counter(), time.process_time()
    data, images = assemble_page(config, info, results, timing=timing)
    path = write_page(out, data, images, overwrite=overwrite, inline_images=inline_images)
    timing["writing"] = round(time.perf_counter() - t1, 3)
    timing["cpu"]["writing"] = round(time.process_time() - c1, 3)
    timing["total"] = round(time.perf_counter() - t0, 3)
    timing["cpu"]["total"] = round(time.process_time() - c0, 3)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    timing["output_bytes"] = int(size)
    return path, timing


def build_interface(agent: Any, out: str | Path, *, env: str | None = None, trajectories: int = 8, steps: int = 512,
                    observations: int = 4096, obs_every: int = 128, features: int = 8,
                    layers: Sequence[str] | str | None = None, integrate_steps: int = 10, seed: int = 0,
                    device: Any = None, overwrite: bool = False, progress: bool = True, fv_steps: int = 512,
                    action_attribution: bool = True, inline_images: bool | None = None,
                    trust_pickle: bool = False, workers: int | None = None, address: str | None = None) -> Path:
    """Build the Understanding-RL-Vision interface of an agent: one offline ``index.html`` to explore.

    The page (Hilton et al. 2020, https://distill.pub/2020/understanding-rl-vision) shows ``trajectories`` rollouts
    of the agent frame by frame with its value, GAE advantage, action probabilities and chosen-action logits, the
    frames of highest and lowest advantage as bookmarks, and, for each layer, the integrated-gradient attribution of
    the value (or of the chosen action's logit) to that layer, split into NMF features (fitted on value attributions
    of ``observations`` sampled frames, as the paper) with a legend of dataset examples and feature visualizations.
    It works opened from disk: data inline, no network access (a Content-Security-Policy blocks every external load).

    Parameters
    ----------
    agent : str or path
        A bundled agent name (``"coinrun"``, ``"breakout"``, ``"freeway"``), an xrl checkpoint folder, or a
        Stable-Baselines3 ``.zip`` (PPO/A2C; give ``env``).
    out : path
        Output folder (created; it must not exist or be empty unless ``overwrite``).
    env : str, optional
        Environment id (a MinAtar game or ``"coinrun"``); default the checkpoint's.
    trajectories : int, default 8
        Rollouts shown on the page.
    steps : int, default 512
        Frames per rollout.
    observations : int, default 4096
        Frames sampled for NMF and dataset examples...
    obs_every : int, default 128
        ... one every ``obs_every`` steps of each of 128 environments (a broad sample, as the paper).
    features : int, default 8
        NMF features per layer.
    layers : list of str, optional
        Layers to explain (dotted or underscore names); default every conv block output.
    integrate_steps : int, default 10
        Integrated-gradient steps.
    seed : int, default 0
        Seeds the rollouts, the observation sample, NMF and feature visualization.
    device : str, optional
        ``"cuda"`` to compute on a GPU; default CPU.
    overwrite : bool, default False
        Replace an existing page folder.
    progress : bool, default True
        Progress bars for each work item.
    fv_steps : int, default 512
        Optimisation steps of the feature visualization.
    action_attribution : bool, default True
        Also attribute the chosen action's logit (the page's second attribution kind; doubles attribution time).
    inline_images : bool, optional
        Images as data URIs inside index.html (default unless they exceed 24 MB; else PNGs in ``out/images``).
    trust_pickle : bool, default False
        SB3 files only: unpickle what only the file's pickles describe (a custom features extractor) with SB3's
        loader. This runs code from the file; only for files you trust.
    workers : int, optional
        Spread the work items over this many Ray workers (needs ``pip install "xrl[ray]"``): the rollouts and the
        observation sample, then one NMF fit per layer, then the feature visualizations and one attribution per
        layer x trajectory, each stage's items in parallel, each worker loading the agent itself. Default: all in
        this process (Ray is not imported). The page equals the serial one.
    address : str, optional
        The Ray cluster to run on (``"auto"`` or ``"host:port"``, see :func:`xrl.distributed.cluster`); default a
        local Ray instance for this call when ``workers`` is given. With an address and no ``workers``, one worker
        per CPU of the cluster. A checkpoint folder or SB3 file must be at the same path on every node.

    Returns
    -------
    pathlib.Path of ``index.html``.

    Raises
    ------
    ValueError
        Unknown agent names (the bundled names are listed), layers that do not exist (close matches listed), an
        environment whose observations the agent cannot take, an SB3 file without a value head, an output folder
        that exists without ``overwrite``; nothing is written then. ``workers`` below 1.
    ImportError
        ``workers`` or ``address`` given without Ray installed (the extra ``xrl[ray]`` is named).
    ConnectionError
        An ``address`` where no Ray cluster answers.
    xrl.distributed.WorkerError
        A work item failed on a worker (the item is named); nothing is written.

    Examples
    --------
    >>> path = build_interface("breakout", "outputs/interface/breakout", trajectories=2, steps=64,
    ...                        observations=256, obs_every=16)        # doctest: +SKIP
    """
    path, _ = build_interface_timed(agent, out, env=env, trajectories=trajectories, steps=steps,
                                    observations=observations, obs_every=obs_every, features=features, layers=layers,
                                    integrate_steps=integrate_steps, seed=seed, device=device, overwrite=overwrite,
                                    progress=progress, fv_steps=fv_steps, action_attribution=action_attribution,
                                    inline_images=inline_images, trust_pickle=trust_pickle, workers=workers,
                                    address=address)
    return path
