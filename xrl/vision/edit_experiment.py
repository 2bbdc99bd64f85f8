"""The buzzsaw edit of "Understanding RL Vision" (Hilton et al., Distill 2020, section "Model editing") on CoinRun.

The paper fits NMF on the value-function attributions of one layer of its CoinRun agent, finds the direction whose
dataset examples show buzzsaws, projects it out of the kernel of the next layer, and counts over 10,000 levels how
episodes end: deaths by buzzsaw rose from 0.37% to 12.76%. This module runs that experiment end to end on any
CoinRun agent ``agent(obs [B, 3, 64, 64] uint8) -> (logits, value)``:

1. :func:`~xrl.agents.sample_observations` (observations sampled every few steps of the agent's own play);
2. :class:`~xrl.vision.LayerNMF` on value attributions (``attr_layer_name="fc_value"``) at ``layer``;
3. :func:`direction_object_correlations`: each direction's activation map against the saw, enemy, lava and coin
   pixels that :func:`xrl.envs.object_masks` finds in the same observations, so the buzzsaw direction is chosen by
   numbers (and then confirmed by looking at its dataset examples, :func:`save_direction_examples`);
4. :func:`~xrl.vision.project_out_direction` on the consumer of ``layer`` (``embedder.block2`` ->
   ``embedder.block3.conv``);
5. :func:`play_levels` for the original and the edited agent on the SAME levels (env ``i`` of a vectorised env plays
   the same sequence of level seeds for every agent), with each episode's end read by
   :func:`xrl.envs.classify_episode_end`;
6. :func:`paired_comparison`: success rate, episode length and the share of episodes ending by each cause, with
   standard errors, and the paired differences with theirs.

:func:`run_saw_edit_experiment` chains the six steps; ``examples/coinrun_saw_edit.py`` is its command line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from xrl._utils import eval_mode, resolve_device
from xrl._validation import check_scalar, error_message
from xrl.envs.coinrun_events import END_CAUSES, FinalFrames, classify_episode_end, coinrun_palette, object_masks
from xrl.metrics.interpretability import object_correlations
from xrl.render.images import over_white
from xrl.vision.editing import project_out_direction
from xrl.vision.layer_nmf import LayerNMF

__all__ = ["OBJECTS", "EpisodeOutcomes", "play_levels", "paired_comparison", "direction_object_correlations",
           "project_out_directions", "SawEditResult", "run_saw_edit_experiment", "save_direction_examples",
           "plot_episode_ends"]

#: Objects whose pixel masks are correlated with the NMF directions (the order of the columns of the correlations).
OBJECTS = ("saw", "enemy", "lava", "coin")


@dataclass
class EpisodeOutcomes:
    """One episode per level: ``level_seeds``, ``returns``, ``lengths`` and ``causes`` (:data:`END_CAUSES`) are
    ``[E]`` arrays in the same order for every agent played on the same levels; ``final_frames [E, k, 3, 64, 64]``
    uint8 (the last ``k`` observations, oldest first) when kept."""

    level_seeds: np.ndarray
    returns: np.ndarray
    lengths: np.ndarray
    causes: np.ndarray
    final_frames: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def success(self) -> np.ndarray:
        return self.causes == "success"

    def __len__(self) -> int:
        return len(self.level_seeds)


def play_levels(agent: nn.Module, num_levels: int, *, seed: int = 0, num_envs: int = 50,
                env_kwargs: dict | None = None, deterministic: bool = False, keep_frames: int = 3,
                progress: bool = True, device: Any = None) -> EpisodeOutcomes:
    """Play one episode on each of ``num_levels`` CoinRun levels and read how each ended.

    Parameters
    ----------
    agent : nn.Module
        ``agent(obs [B, 3, 64, 64] uint8) -> (logits [B, 15], value [B])``, called as given (in eval mode, without
        gradients) on the envs whose episodes still count.
    num_levels : int
        Episodes to play. Env ``i`` of ``make_coinrun(num_envs, seed=seed, **env_kwargs)`` contributes its first
        ``ceil(num_levels / num_envs)`` episodes; the result keeps the first ``num_levels`` of them in the order
        (episode index, env index). procgen draws env ``i``'s level seeds from its own generator, independently of
        the actions, so every agent played with the same ``seed``, ``num_envs`` and ``env_kwargs`` meets the same
        levels in the same order (checked by :func:`paired_comparison` through ``level_seeds``).
    seed : int, default 0
        Seeds the environments (procgen's ``rand_seed``) and the sampling of actions. Actions are sampled with common
        random numbers: the episode on level ``(env i, episode k)`` draws its uniform numbers from a generator seeded
        with ``(seed, i, k)``, so two agents on the same level share their sampling noise (differences between them
        come from their policies, which tightens the paired comparison), and no episode depends on the others.
    num_envs : int, default 50
        Batch size of inference.
    env_kwargs : dict, optional
        For :func:`xrl.envs.make_coinrun`; default ``{"distribution_mode": "easy", "num_levels": 0}`` (levels drawn
        from all of procgen's level seeds, so mostly levels the agent never trained on).
    deterministic : bool, default False
        Argmax actions instead of sampling (the paper samples).
    keep_frames : int, default 3
        Final observations kept per episode (0 keeps none); the last one decides the death cause.
    progress : bool, default True
        tqdm bar over finished episodes.

    Returns
    -------
    EpisodeOutcomes
    """
    from tqdm.auto import tqdm

    from xrl.envs import make_coinrun

    check_scalar("num_levels", num_levels, int, low=1)
    check_scalar("num_envs", num_envs, int, low=1)
    check_scalar("keep_frames", keep_frames, int, low=0)
    kwargs = {"distribution_mode": "easy", "num_levels": 0, **(env_kwargs or {})}
    env = make_coinrun(num_envs=num_envs, seed=seed, **kwargs)
    dev = resolve_device(device, agent)
    palette = coinrun_palette()
    quota = -(-num_levels // num_envs)
    obs, info = env.reset()
    level = np.asarray(info["level_seed"], dtype=np.int64).copy()           # the level each env is playing
    counts = np.zeros(num_envs, dtype=np.int64)
    frames = FinalFrames(num_envs, keep=max(keep_frames, 1))
    rows: list[tuple[int, int, int, float, int, str, np.ndarray | None]] = []
    bar = tqdm(total=quota * num_envs, disable=not progress, desc="levels", unit="ep")
    noop = env.action_names.index("NOOP")
    rngs = [np.random.default_rng([seed, i, 0]) for i in range(num_envs)]   # common random numbers per episode
    try:
        with eval_mode(agent), torch.inference_mode():
            while (counts < quota).any():
                live = np.flatnonzero(counts < quota)
                frames.push(obs)
                actions = np.full(num_envs, noop, dtype=np.int64)          # envs past their quota just wait
                logits, _ = agent(torch.from_numpy(obs[live]).to(dev))
                if deterministic:
                    actions[live] = logits.argmax(-1).cpu().numpy()
                else:
                    cdf = torch.softmax(logits.double(), -1).cumsum(-1).cpu().numpy()   # [n_live, A]
                    u = np.array([rngs[i].random() for i in live]) * cdf[:, -1]
                    actions[live] = np.minimum((cdf < u[:, None]).sum(1), cdf.shape[1] - 1)   # inverse CDF
                obs, _, done, _, info = env.step(actions)
                for i, last in frames.pop_finished(done):
                    if counts[i] < quota:
                        ret, length = float(info["episode_return"][i]), int(info["episode_length"][i])
                        cause = classify_episode_end(last, length, ret, palette=palette)
                        rows.append((int(counts[i]), i, int(level[i]), ret, length, cause,
                                     last[-keep_frames:] if keep_frames else None))
                        counts[i] += 1
                        bar.update(1)
                    rngs[i] = np.random.default_rng([seed, i, int(counts[i])])
                level = np.where(done, np.asarray(info["level_seed"], dtype=np.int64), level)
    finally:
        bar.close()
        env.close()
    rows.sort(key=lambda r: (r[0], r[1]))
    rows = rows[:num_levels]
    final = None
    if keep_frames:   # episodes shorter than keep_frames are padded by repeating their first frame
        final = np.stack([np.concatenate([np.repeat(r[6][:1], keep_frames - len(r[6]), 0), r[6]]) for r in rows])
    return EpisodeOutcomes(np.array([r[2] for r in rows], dtype=np.int64), np.array([r[3] for r in rows]),
                           np.array([r[4] for r in rows], dtype=np.int64), np.array([r[5] for r in rows], dtype=object),
                           final, {"seed": seed, "num_envs": num_envs, "env_kwargs": kwargs,
                                   "deterministic": deterministic})


def _mean_sem(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, dtype=np.float64)
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


def paired_comparison(original: EpisodeOutcomes, edited: EpisodeOutcomes,
                      causes: Sequence[str] = END_CAUSES) -> dict[str, Any]:
    """Success rate, episode length and the share of episodes ending by each cause, per agent and paired.

    Both outcomes must come from the same levels (equal ``level_seeds``, as :func:`play_levels` gives with the same
    seed and env settings). Each entry holds ``{"original": [mean, sem], "edited": [mean, sem], "difference":
    [mean, sem]}`` where the difference is edited minus original over the paired levels (its standard error uses the
    per-level differences, so luck shared by both agents on a level cancels). Shares are fractions of all episodes
    (the paper's "deaths by buzzsaw" are percentages of levels).
    """
    if len(original) != len(edited) or not np.array_equal(original.level_seeds, edited.level_seeds):
        raise ValueError(error_message("edited", f"outcomes on the same {len(original)} levels as original (equal "
                                       "level_seeds)", f"{len(edited)} episodes with different level seeds",
                                       "play both agents with the same seed, num_envs and env_kwargs"))
    metrics = {"success_rate": (original.success, edited.success),
               "episode_length": (original.lengths, edited.lengths)}
    for c in causes:
        if c != "success":
            metrics[f"ends_by_{c}"] = (original.causes == c, edited.causes == c)
    out: dict[str, Any] = {"levels": len(original)}
    for name, (a, b) in metrics.items():
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        out[name] = {"original": list(_mean_sem(a)), "edited": list(_mean_sem(b)), "difference": list(_mean_sem(b - a))}
    failed_o, failed_e = ~original.success, ~edited.success
    out["saw_share_of_failures"] = {
        "original": list(_mean_sem(original.causes[failed_o] == "saw")) if failed_o.sum() > 1 else [float("nan")] * 2,
        "edited": list(_mean_sem(edited.causes[failed_e] == "saw")) if failed_e.sum() > 1 else [float("nan")] * 2}
    return out


def direction_object_correlations(nmf: LayerNMF, observations: Any | None = None,
                                  objects: Sequence[str] = OBJECTS) -> np.ndarray:
    """Pearson correlation ``[features, len(objects)]`` between each NMF direction's activation map
    (``nmf.acts_reduced``) and each object's pixel mask (:func:`xrl.envs.object_masks`) pooled to the layer's grid.

    ``observations``: the uint8 CoinRun frames the NMF was fitted on (default ``nmf.observations`` as uint8).
    """
    obs = nmf.observations if observations is None else observations
    obs = np.asarray(obs)
    if obs.dtype != np.uint8:
        obs = np.clip(np.round(obs), 0, 255).astype(np.uint8)
    masks = object_masks(obs)
    stacked = np.stack([masks[o] for o in objects], 1).astype(np.float32)   # [N, len(objects), 64, 64]
    return object_correlations(nmf.acts_reduced, stacked)


def project_out_directions(model: nn.Module, layer: str, directions: Any, *, example_obs: Any) -> nn.Module:
    """A copy of ``model`` whose reader of ``layer`` ignores the whole span of ``directions [k, C]``.

    The directions are orthonormalised (QR) and each is projected out with :func:`~xrl.vision.project_out_direction`
    in turn; for orthonormal ``q_i`` the product of the projections ``(I - q_1 q_1^T) ... (I - q_k q_k^T)`` is the
    projection on the complement of the span (projecting the raw NMF directions one after the other would not be:
    they are not orthogonal). ``edit_info["directions"]`` holds the orthonormal basis ``[k, C]``.
    """
    d = np.atleast_2d(np.asarray(directions, dtype=np.float64))
    if d.ndim != 2 or d.shape[0] < 1 or not np.isfinite(d).all():
        raise ValueError(error_message("directions", "a finite array [k, channels] with k >= 1", d))
    q, r = np.linalg.qr(d.T)                                                # [C, k]: orthonormal basis of the span
    keep = np.abs(np.diag(r)) > 1e-6 * max(1.0, float(np.abs(r).max()))
    if not keep.any():
        raise ValueError(error_message("directions", "at least one non-zero direction", d))
    basis = q[:, keep].T.astype(np.float32)                                 # [k', C]
    edited = project_out_direction(model, layer, basis[0], example_obs=example_obs)
    for vec in basis[1:]:
        project_out_direction(edited, layer, vec, next_layer=edited.edit_info["next_layer"], inplace=True)
    edited.edit_info["directions"] = basis
    return edited


@dataclass
class SawEditResult:
    """What :func:`run_saw_edit_experiment` found: the NMF, each direction's correlation with the objects, the
    direction edited out, the edited agent, both agents' outcomes on the same levels and their comparison."""

    nmf: LayerNMF
    correlations: np.ndarray
    direction: int
    edited: nn.Module
    original_outcomes: EpisodeOutcomes
    edited_outcomes: EpisodeOutcomes
    comparison: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """JSON-able numbers (no arrays of observations or frames)."""
        return {"layer": self.nmf.layer, "features": self.nmf.features,
                "objects": list(OBJECTS), "correlations": np.round(self.correlations, 4).tolist(),
                "direction": self.direction, "direction_correlations": dict(zip(OBJECTS, np.round(
                    self.correlations[self.direction], 4).tolist())),
                "edited_layer": self.edited.edit_info["next_layer"], "comparison": self.comparison}


def run_saw_edit_experiment(agent: nn.Module, *, layer: str = "embedder.block2", features: int = 8,
                            num_obs: int = 2048, obs_every: int = 16, obs_envs: int = 64, levels: int = 1000,
                            num_envs: int = 50, seed: int = 0, direction: int | None = None,
                            env_kwargs: dict | None = None, integrate_steps: int = 10, progress: bool = True,
                            observations: np.ndarray | None = None) -> SawEditResult:
    """The paper's buzzsaw edit, end to end (see the module docstring for the steps).

    Parameters
    ----------
    agent : nn.Module
        A CoinRun agent (e.g. ``load_bundled_agent("coinrun")``); it is not modified (the edit is on a copy).
    layer : str, default "embedder.block2"
        Where the NMF is fitted and the direction removed (its consumer conv is edited).
    features : int, default 8
        NMF directions (the paper's 8).
    num_obs, obs_every, obs_envs : int
        :func:`~xrl.agents.sample_observations`: ``num_obs`` observations, every ``obs_every`` steps of ``obs_envs``
        envs (the paper: 4,096 observations every 128 steps).
    levels, num_envs : int
        :func:`play_levels` for each agent.
    seed : int, default 0
        Seeds the observation sampling and the NMF; the levels are played with ``seed + 1``.
    direction : int, optional
        The direction to edit out; default the one most correlated with saw pixels.
    env_kwargs : dict, optional
        For the levels played (:func:`play_levels`); default easy mode, all levels.
    integrate_steps : int, default 10
        Integrated-gradient steps of the value attributions (the paper's 10).
    observations : uint8 array [N, 3, 64, 64], optional
        Use these instead of sampling.

    The agent is called as given; on a CPU a channels-last copy (``copy.deepcopy(agent).to(
    memory_format=torch.channels_last)``, same outputs up to rounding) makes the many rollouts faster,
    and the edited copy inherits its layout.

    Returns
    -------
    SawEditResult

    Examples
    --------
    >>> from xrl.agents import load_bundled_agent
    >>> res = run_saw_edit_experiment(load_bundled_agent("coinrun"), levels=1000)     # doctest: +SKIP
    >>> res.comparison["ends_by_saw"]    # doctest: +SKIP
    {"original": [mean, sem], "edited": [mean, sem], "difference": [mean, sem]}
    """
    from xrl.agents import sample_observations

    check_scalar("features", features, int, low=1)
    if observations is None:
        observations = sample_observations(agent, "coinrun", num_obs=num_obs, every=obs_every, num_envs=obs_envs,
                                           seed=seed, env_kwargs={"distribution_mode": "easy", "num_levels": 0})
    nmf = LayerNMF(agent, layer, observations, features=features, attr_layer_name="fc_value",
                   attr_opts={"integrate_steps": integrate_steps}, seed=seed)
    corr = direction_object_correlations(nmf, observations)
    k = int(np.argmax(corr[:, OBJECTS.index("saw")])) if direction is None else int(direction)
    if not 0 <= k < features:
        raise ValueError(error_message("direction", f"an NMF direction index in [0, {features})", direction))
    edited = project_out_direction(agent, layer, nmf.channel_dirs[k], example_obs=observations[:2])
    outcomes = [play_levels(m, levels, seed=seed + 1, num_envs=num_envs, env_kwargs=env_kwargs, progress=progress)
                for m in (agent, edited)]
    return SawEditResult(nmf, corr, k, edited, outcomes[0], outcomes[1], paired_comparison(*outcomes))


def save_direction_examples(nmf: LayerNMF, path: str | Path, directions: Sequence[int] | None = None,
                            labels: Sequence[str] | None = None, *, num_mult: int = 4, expand_mult: float = 4,
                            zoom: int = 3) -> Path:
    """Dataset examples of NMF directions (``nmf.vis_dataset_thumbnail``: the ``num_mult**2`` observations that
    activate each direction most, cropped around the strongest position, opacity = activation) as one PNG, one panel
    per direction with its label."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    directions = list(range(nmf.channel_dirs.shape[0])) if directions is None else list(directions)
    if labels is not None and len(labels) != len(directions):
        raise ValueError(error_message("labels", f"one label per direction ({len(directions)})", len(labels)))
    images = []
    for k in directions:
        img, _ = nmf.vis_dataset_thumbnail(int(k), num_mult=num_mult, expand_mult=expand_mult, max_rep=np.inf)
        images.append(over_white(img, "chw"))                              # opacity over white
    n = len(directions)
    ncols = min(n, 4)
    nrows = -(-n // ncols)
    h = max(i.shape[0] for i in images) * zoom / 100
    w = max(i.shape[1] for i in images) * zoom / 100
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * max(w, 3.4) + 0.2, nrows * (h + 0.5)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for j, (ax, k, rgb) in enumerate(zip(axes.flat, directions, images)):
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(labels[j] if labels is not None else f"direction {k}", fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_episode_ends(final_frames: np.ndarray, labels: Sequence[str], path: str | Path, *, ncols: int = 5,
                      zoom: int = 2) -> Path:
    """A contact sheet: per episode its last ``k`` frames side by side (oldest first, each ``zoom`` times enlarged
    pixel for pixel), titled with its label (e.g. the detector's verdict), to check the detector by eye.

    ``final_frames``: uint8 ``[E, k, 3, H, W]``; ``labels``: ``E`` strings. Returns the PNG's path.
    """
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    frames = np.asarray(final_frames)
    if frames.ndim != 5 or frames.shape[2] != 3 or frames.dtype != np.uint8:
        raise ValueError(error_message("final_frames", "uint8 frames [E, k, 3, H, W]", frames))
    if len(labels) != len(frames):
        raise ValueError(error_message("labels", f"one label per episode ({len(frames)})", len(labels)))
    check_scalar("zoom", zoom, int, low=1)
    E, k, _, H, W = frames.shape
    gap, title, margin = 2, 16, 10
    cell_w, cell_h = k * W * zoom + (k - 1) * gap, H * zoom + title
    nrows = -(-E // ncols)
    width, height = ncols * cell_w + (ncols + 1) * margin, nrows * cell_h + (nrows + 1) * margin
    canvas = np.full((height, width, 3), 255, np.uint8)
    corners = []
    for e in range(E):
        r, c = divmod(e, ncols)
        x, y = margin + c * (cell_w + margin), margin + r * (cell_h + margin)
        corners.append((x, y))
        for j in range(k):
            img = np.moveaxis(frames[e, j], 0, -1).repeat(zoom, 0).repeat(zoom, 1)   # [H*zoom, W*zoom, 3]
            x0 = x + j * (W * zoom + gap)
            canvas[y + title:y + title + H * zoom, x0:x0 + W * zoom] = img
    dpi = 100
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    fig.figimage(canvas, 0, 0)
    for (x, y), label in zip(corners, labels):
        fig.text(x / width, 1 - (y + 2) / height, str(label), fontsize=9, ha="left", va="top")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
