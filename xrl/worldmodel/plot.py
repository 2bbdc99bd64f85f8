"""The seed-002 figure done right: per step the frame, the posterior softmax grid with its entropy, the sampled
one-hot state, and the NMF activity of each categorical (masked by the sampled class, no ``stoch / stoch``).

Compute never displays: functions return standalone matplotlib figures (:func:`xrl.render.subplots`: the backend is
not touched, pyplot does not keep them) and write PNG pages only when given a folder or path.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .._validation import check_scalar, error_message
from ..render.images import save_figure, subplots
from .explain import LatentExplanation

_SEED_COLOURS = {"chicken": (255, 255, 255), "car": (255, 0, 0)}
_PALETTE = [(255, 255, 255), (255, 0, 0), (0, 170, 255), (255, 200, 0), (0, 200, 80), (200, 0, 255), (255, 120, 0),
            (120, 120, 120), (0, 255, 200), (255, 100, 180)]


def _check_explanation(ex) -> None:
    if not isinstance(ex, LatentExplanation):
        raise TypeError(error_message("ex", "a LatentExplanation (from explain_latents)", type(ex).__name__))


def render_frame(obs: np.ndarray, channel_names: list[str] | None = None) -> np.ndarray:
    """MinAtar frame [C, H, W] (0/1) -> uint8 RGB [H, W, 3]; later channels paint over earlier ones.

    Freeway's chicken is white and cars red, as in the seed's ``render_freeway``.
    """
    C, H, W = obs.shape
    buf = np.zeros((H, W, 3), dtype=np.uint8)
    names = list(channel_names or [])
    for c in range(C):
        name = names[c] if c < len(names) else ""
        buf[obs[c] > 0.5] = _SEED_COLOURS.get(name, _PALETTE[c % len(_PALETTE)])
    return buf


def _action_label(ex: LatentExplanation, b: int, t: int) -> str:
    a = int(ex.actions[b, t])
    name = ex.action_names[a] if a < len(ex.action_names) else str(a)
    # in parentheses: the game's move timer ignores the action at this step (seed convention)
    return f"Next {name}" if ex.has_effect[b, t] else f"Next ({name})"


def plot_latents(ex: LatentExplanation, rollout: int = 0, steps=None, rows_per_page: int = 10,
                 out_dir: str | Path | None = None, prefix: str = "latents", dpi: int = 80) -> list:
    """Seed-002 figure for one rollout, split into pages of ``rows_per_page`` steps.

    Columns: environment frame o_t (title: the next action, in parentheses when the move timer makes it a no-op,
    and the reward), the C x K softmax grid with the summed entropy H, the sampled one-hot state s_t, and the
    activity ``activity[c] * stoch[c, k]`` (in [0, 1]). Returns the figures; with ``out_dir`` also writes
    ``<prefix>_rollout<b>_page<p>.png`` and stores the paths in ``fig.xrl_path``.
    """
    _check_explanation(ex)
    B, L, C, K = ex.shape
    check_scalar("rows_per_page", rows_per_page, int, low=1)
    if not (isinstance(rollout, (int, np.integer)) and 0 <= rollout < B):
        raise ValueError(error_message("rollout", f"an int in [0, {B - 1}]", rollout))
    steps = list(range(L)) if steps is None else [int(s) for s in steps]
    bad = [s for s in steps if not 0 <= s < L]
    if bad:
        raise ValueError(error_message("steps", f"step indices in [0, {L - 1}]", bad))
    figs = []
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    for p, start in enumerate(range(0, len(steps), rows_per_page)):
        page = steps[start:start + rows_per_page]
        fig, axs = subplots(len(page), 4, figsize=(10, 2.6 * len(page)))
        for col, title in enumerate(("Environment $o_t$", "Categoricals", "Sampled stoch state $s_t$", "Activity")):
            axs[0, col].set_title(title)
        for row, t in enumerate(page):
            ax = axs[row]
            ax[0].imshow(render_frame(ex.obs[rollout, t], ex.channel_names))
            ax[0].set_ylabel(f"Step {t}")
            label = _action_label(ex, rollout, t)
            if ex.rewards[rollout, t]:
                label += f", r={ex.rewards[rollout, t]:g}"
            ax[0].text(0.98, 0.02, label, transform=ax[0].transAxes, ha="right", va="bottom", color="black",
                       fontsize=8, bbox=dict(facecolor="white", alpha=0.8, pad=1))
            ax[1].imshow(ex.probs[rollout, t], vmin=0, vmax=1)
            ax[1].text(0.98, 0.02, f"H {ex.entropy[rollout, t]:.3f}", transform=ax[1].transAxes, ha="right",
                       va="bottom", fontsize=8, bbox=dict(facecolor="white", alpha=0.8, pad=1))
            ax[2].imshow(ex.stoch[rollout, t], vmin=0, vmax=1)
            masked = ex.stoch[rollout, t] * ex.activity[rollout, t][:, None]  # [C, K] one-hot * [C, 1]
            ax[3].imshow(masked, vmin=0, vmax=1)
            ax[3].text(0.98, 0.02, f"|a| {ex.step_importance[rollout, t]:.2f}", transform=ax[3].transAxes,
                       ha="right", va="bottom", fontsize=8, bbox=dict(facecolor="white", alpha=0.8, pad=1))
            ax[0].set_xticks([])
            ax[0].set_yticks([])
            for a in ax[1:]:
                a.set_xticks([0, K // 2])
                a.set_yticks([0, C // 2])
        fig.tight_layout()
        if out is not None:
            path = save_figure(fig, out / f"{prefix}_rollout{rollout}_page{p}.png", dpi=dpi)
            fig.xrl_path = str(path)
        figs.append(fig)
    return figs


def plot_top_observations(ex: LatentExplanation, out_path: str | Path | None = None, dpi: int = 80):
    """Grid of the most important observations of each rollout (rows: rollouts; columns: rank by importance)."""
    _check_explanation(ex)
    B, k = ex.top_steps.shape
    fig, axs = subplots(B, k, figsize=(1.6 * k, 1.7 * B))
    for b in range(B):
        for j, t in enumerate(ex.top_steps[b]):
            ax = axs[b, j]
            ax.imshow(render_frame(ex.obs[b, t], ex.channel_names))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"t={t} {ex.step_importance[b, t]:.2f}", fontsize=7)
            if j == 0:
                ax.set_ylabel(f"rollout {b}", fontsize=8)
    fig.tight_layout()
    if out_path is not None:
        fig.xrl_path = str(save_figure(fig, out_path, dpi=dpi))
    return fig
