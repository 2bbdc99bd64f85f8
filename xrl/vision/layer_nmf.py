"""LayerNMF: NMF directions in a layer's activation space and their visualizations (lucid rl_util, in torch).

``LayerNMF = hooks (activations) + attribution (optional) + xrl.nmf.NMF + render``. The directions ``channel_dirs``
are fitted either on the activations of ``layer`` or, when ``attr_layer_name`` is given (e.g. ``"fc_value"``), on the
positive and negative parts of the integrated-gradient attributions of that output to ``layer`` (the paper's choice).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xrl._utils import resolve_device
from xrl._validation import check_scalar, error_message
from xrl.attribution import to_tensor
from xrl.nmf import NMF
from xrl.render.fv import l2
from xrl.render.images import observation_rgb
from xrl.vision.core import _check_obs, get_acts, get_attr, receptive_field

__all__ = ["LayerNMF", "argmax_nd"]


def argmax_nd(x: np.ndarray, axes: Sequence[int], *, max_rep: float = np.inf) -> tuple[np.ndarray, ...]:
    """For every index of the axes NOT in ``axes`` (a "slot"), the argmax over ``axes``, with each argmax value used
    by at most ``max_rep`` slots (strongest slots choose first; others take their next best). Returns index arrays
    over ``axes`` shaped like the remaining axes (as ``np.unravel_index``)."""
    axes = [a % x.ndim for a in axes]
    rest = [a for a in range(x.ndim) if a not in axes]
    xt = np.transpose(x, rest + axes)
    slot_shape, cand_shape = xt.shape[:len(rest)], xt.shape[len(rest):]
    flat = xt.reshape(int(np.prod(slot_shape)), -1)                    # [slots, candidates]
    if np.isinf(max_rep):
        choice = flat.argmax(1)
    else:
        order = np.argsort(-flat, axis=1, kind="stable")                # each slot's preference list
        counts = np.zeros(flat.shape[1], dtype=int)
        choice = np.empty(flat.shape[0], dtype=int)
        for slot in np.argsort(-flat.max(1), kind="stable"):
            for cand in order[slot]:
                if counts[cand] < max_rep:
                    break
            else:
                cand = order[slot][0]
            choice[slot] = cand
            counts[cand] += 1
    return np.unravel_index(choice.reshape(slot_shape), cand_shape)


def _to_nhwc(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(x, 1, -1) if x.ndim == 4 else x


class LayerNMF:
    """NMF of a layer's activations (or of value attributions to it) with dataset and feature visualizations.

    Parameters
    ----------
    model : nn.Module
        Takes observations ``[B, C, H, W]``.
    layer : str
        Layer to factorise (dotted or underscore name), e.g. ``"embedder.block2"``.
    observations : array [N, C, H, W]
        Observations to fit the NMF on (and to draw dataset examples from).
    features : int or None, default 8
        Number of NMF directions; None keeps the raw channels (``channel_dirs`` = identity).
    attr_layer_name : str, optional
        Fit on attributions of this output (e.g. ``"fc_value"``) instead of activations. Signed data (attributions,
        and activations of layers that are not ReLU outputs) is factorised as its positive and negative parts
        stacked, as lucid does for attributions.
    attr_opts : dict, optional
        Passed to :func:`get_attr`, default ``{"integrate_steps": 10}``.
    obs_full : array, optional
        Observations to crop dataset patches from (e.g. RGB renders of MinAtar's object channels); default
        ``observations`` (converted to colours with :func:`xrl.render.to_rgb`). Same N, H, W.
    batch_size : int, default 256
    nmf_kwargs : dict, optional
        Passed to :class:`xrl.nmf.NMF` (``max_iter``, ``tol``, ``init``...).
    seed : int, default 0
    device : optional
        Default: the model's device.

    Attributes
    ----------
    channel_dirs : ndarray [features, channels]
        NMF directions in the layer's channel space (numpy, as in lucid).
    acts_reduced : ndarray [N, h, w, features]
        Activations projected on the directions (channels last, as in lucid). For layers with negative activations
        (IMPALA block outputs are residual sums, not ReLU outputs) the projection of the negative part is subtracted.
    receptive_field : :class:`~xrl.vision.core.ReceptiveField`
    """

    def __init__(self, model: nn.Module, layer: str, observations: Any, features: int | None = 8, *,
                 attr_layer_name: str | None = None, attr_opts: dict | None = None, obs_full: Any = None,
                 batch_size: int = 256, nmf_kwargs: dict | None = None, seed: int = 0, device: Any = None):
        self.model = model
        self.layer = layer
        self.layer_name = layer
        self.features = features
        self.attr_layer_name = attr_layer_name
        self.batch_size = batch_size
        self.seed = seed
        self.device = resolve_device(device, model)
        obs_t, _ = to_tensor("observations", observations, self.device)
        _check_obs(model, obs_t)
        self.obs_shape = tuple(obs_t.shape[1:])
        self.observations = obs_t.cpu().numpy()
        acts = _to_nhwc(get_acts(model, layer, self.observations, batch_size=batch_size, device=self.device))
        if acts.ndim != 4:
            raise ValueError(error_message("layer", "a convolutional layer with [B, C, H, W] activations", layer,
                                           f"its output has shape {acts.shape}"))
        self.acts = acts                                                 # [N, h, w, C]
        C = acts.shape[-1]
        if features is None:
            self.nmf = None
            self.channel_dirs = np.eye(C, dtype=np.float32)
            self.acts_reduced = acts.copy()
        else:
            check_scalar("features", features, int, low=1)
            kw = dict(nmf_kwargs or {})
            kw.setdefault("seed", seed)
            self.nmf = NMF(features, **kw)
            if attr_layer_name is None:
                flat = acts.reshape(-1, C)                               # [N, h, w, C] -> [N*h*w, C]
                if flat.min() >= 0:
                    self.acts_reduced = self.nmf.fit_transform(flat).reshape(acts.shape[:-1] + (features,))
                else:   # signed activations (residual sums): factorise positive and negative parts together
                    self.nmf.fit(np.concatenate([np.maximum(flat, 0), np.maximum(-flat, 0)], 0))
                    self.acts_reduced = self._reduce(acts)
            else:
                opts = {"integrate_steps": 10, **(attr_opts or {})}
                attrs = _to_nhwc(get_attr(model, attr_layer_name, layer, self.observations, batch_size=batch_size,
                                          device=self.device, **opts))
                self.attrs = attrs
                signed = np.concatenate([np.maximum(attrs, 0), np.maximum(-attrs, 0)], 0).reshape(-1, C)
                self.nmf.fit(signed)                                     # [2*N*h*w, C]
                self.acts_reduced = self._reduce(acts)
            self.channel_dirs = np.asarray(self.nmf.components_, dtype=np.float32)
        full = self.observations if obs_full is None else np.asarray(obs_full)
        self.obs_full = full
        self.obs_rgb = observation_rgb(full, layout="chw" if full.shape[1:] == self.obs_shape else None)  # [N,H,W,3]
        if self.obs_rgb.shape[:3] != (len(self.observations),) + self.obs_shape[1:]:
            raise ValueError(error_message("obs_full", f"images with N={len(self.observations)} and H x W = "
                                           f"{self.obs_shape[1]} x {self.obs_shape[2]}", full))
        self.receptive_field = receptive_field(model, layer, self.obs_shape, device=self.device)
        self._pad = 0
        self._padded = None

    # ------------------------------------------------------------------ projections
    def _reduce(self, acts_nhwc: np.ndarray) -> np.ndarray:
        C = acts_nhwc.shape[-1]
        if self.nmf is None:
            return acts_nhwc.copy()
        flat = acts_nhwc.reshape(-1, C)                                  # [..., C] -> [M, C]
        if flat.min() >= 0:
            red = self.nmf.transform(flat)
        else:   # signed activations (e.g. residual-block outputs): positive part minus negative part
            red = self.nmf.transform(np.maximum(flat, 0)) - self.nmf.transform(np.maximum(-flat, 0))
        return red.reshape(acts_nhwc.shape[:-1] + (self.features,))

    def transform(self, acts: Any, layout: str | None = None) -> np.ndarray:
        """Project non-negative activations/attributions on the directions -> ``[..., h, w, features]`` (channels last).

        Accepts the torch layout ``[B, C, h, w]`` (as returned by :func:`get_acts` / :func:`get_attr`) or channels-last
        ``[B, h, w, C]``; ``layout`` ("chw"/"hwc") decides when both axes have the layer's channel count.
        """
        a = acts.detach().cpu().numpy() if isinstance(acts, torch.Tensor) else np.asarray(acts, np.float32)
        C = self.channel_dirs.shape[1]
        if layout is None:
            layout = "chw" if a.ndim >= 3 and a.shape[-3] == C else "hwc"
        if layout == "chw":
            if a.shape[-3] != C:
                raise ValueError(error_message("acts", f"[..., {C}, h, w] (the layer's channels first)", a))
            a = np.moveaxis(a, -3, -1)
        elif a.shape[-1] != C:
            raise ValueError(error_message("acts", f"[..., h, w, {C}] or [..., {C}, h, w]", a))
        return self._reduce(np.ascontiguousarray(a, dtype=np.float32))

    def inverse_transform(self, acts_reduced: np.ndarray) -> np.ndarray:
        """``[..., features]`` -> ``[..., C]`` (channels last)."""
        return np.asarray(acts_reduced, np.float32) @ self.channel_dirs

    # ------------------------------------------------------------------ feature visualization
    def vis_traditional(self, feature_list: Sequence[int] | int | None = None, *, transforms=None,
                        l2_coeff: float = 0.0, l2_layer_name: str | None = None, steps: int = 512, lr: float = 0.05,
                        param: str = "fourier", seed: int | None = None, prior_coeff: float = 100.0,
                        progress: bool = False) -> np.ndarray:
        """Gradient feature visualization of each direction: images ``[F, C, H, W]`` in the observations' units
        (``[0, 1]``; uint8 frames count as ``/255``) maximising ``<acts at the central position, channel_dirs[f]>``
        (lucid's ``direction_neuron``).

        The legibility recipe of :func:`xrl.render.fv.visualize_directions`: Fourier parameterisation
        (``param="fourier"``, or raw pixels ``"pixel"``), transformation robustness sized to the board (one-pixel
        jitter on boards <= 16 wide; jitter, scale and rotation on larger frames), colours kept in the observations'
        range and near their palette (``prior_coeff``, from :func:`~xrl.render.fv.color_statistics` of the
        observations this NMF was fitted on). ``l2_coeff`` > 0 penalises the L2 norm of ``l2_layer_name``'s
        activations (lucid's option). Dataset examples (:meth:`vis_dataset_thumbnail`) are usually clearer.
        """
        from xrl.render.fv import color_statistics, visualize_directions

        if feature_list is None:
            feature_list = list(range(self.channel_dirs.shape[0]))
        elif isinstance(feature_list, (int, np.integer)):
            feature_list = [int(feature_list)]
        feature_list = list(feature_list)
        extra = None
        if l2_coeff:
            if l2_layer_name is None:
                raise ValueError(error_message("l2_layer_name", "a layer name when l2_coeff != 0", None))
            extra = -l2_coeff * l2(l2_layer_name)
        if param not in ("fourier", "pixel"):
            raise ValueError(error_message("param", "'fourier' or 'pixel'", param))
        seed = self.seed if seed is None else seed
        if getattr(self, "_color_stats", None) is None:
            self._color_stats = color_statistics(self.observations, seed=self.seed)
        from xrl._utils import eval_mode

        with eval_mode(self.model):
            return visualize_directions(self.model, self.layer, self.channel_dirs[feature_list], self.obs_shape,
                                        color_stats=self._color_stats, steps=steps, lr=lr, transforms=transforms,
                                        prior_coeff=prior_coeff, extra_objective=extra, param=param, seed=seed,
                                        device=self.device, progress=progress)

    # ------------------------------------------------------------------ dataset examples
    def _pad_obs(self, expand_mult: float) -> None:
        sh, sw = self.receptive_field.stride
        pad = int(np.ceil(max(sh, sw) * expand_mult)) + 1
        if pad <= self._pad and self._padded is not None:
            return
        N, H, W, _ = self.obs_rgb.shape
        checker = (np.indices((H + 2 * pad, W + 2 * pad)).sum(0) % 2) * 0.25 + 0.75   # grey checkerboard outside
        padded = np.repeat(checker[None, ..., None], 3, axis=-1).astype(np.float32)
        padded = np.repeat(padded, N, axis=0)
        padded[:, pad:pad + H, pad:pad + W] = self.obs_rgb
        self._pad, self._padded = pad, padded

    def get_patch(self, obs_index: int, pos_h: float, pos_w: float, *, expand_mult: float = 1) -> np.ndarray:
        """RGB patch ``[ph, pw, 3]`` centred on the receptive-field centre of activation position (pos_h, pos_w)
        (fractional positions allowed), ``expand_mult`` strides wide; outside the observation: a grey checkerboard."""
        self._pad_obs(expand_mult)
        (sh, sw), (oh, ow) = self.receptive_field.stride, self.receptive_field.offset
        ch, cw = oh + pos_h * sh + self._pad, ow + pos_w * sw + self._pad
        hh, hw = 0.5 * expand_mult * sh, 0.5 * expand_mult * sw
        ys = slice(int(round(ch - hh)), int(round(ch + hh)))
        xs = slice(int(round(cw - hw)), int(round(cw + hw)))
        return self._padded[obs_index, ys, xs]

    @staticmethod
    def _assemble(patches: list[list[np.ndarray]], opacities: np.ndarray) -> np.ndarray:
        ph = min(p.shape[0] for row in patches for p in row)
        pw = min(p.shape[1] for row in patches for p in row)
        rows = []
        for i, row in enumerate(patches):
            cells = []
            for j, p in enumerate(row):
                p = p[:ph, :pw]
                alpha = np.full(p.shape[:2] + (1,), opacities[i, j], np.float32)
                cells.append(np.concatenate([p, alpha], -1))
            rows.append(np.concatenate(cells, 1))
        return np.moveaxis(np.concatenate(rows, 0), -1, 0)             # [H, W, 4] -> [4, H, W] (channels first)

    def vis_dataset_thumbnail(self, feature: int, *, num_mult: int = 1, expand_mult: float = 1,
                              max_rep: float | None = None) -> tuple[np.ndarray, list]:
        """The ``num_mult**2`` observations whose strongest position activates direction ``feature`` most, as a grid
        of patches around that position (sorted by position); activation strength in alpha (max 1).

        Returns ``(image [4, H, W] RGBA channels-first, obs_indices [num_mult][num_mult])``. ``max_rep``: how many
        observations may share one position (default ``num_mult``)."""
        check_scalar("num_mult", num_mult, int, low=1)
        max_rep = num_mult if max_rep is None else max_rep
        N = self.acts_reduced.shape[0]
        if N < num_mult ** 2:
            raise ValueError(error_message("num_mult", f"num_mult**2 <= the number of observations ({N})", num_mult))
        acts_f = self.acts_reduced[..., feature]                        # [N, h, w]
        ph, pw = argmax_nd(acts_f, axes=[1, 2], max_rep=max_rep)        # [N], [N]
        best = acts_f[np.arange(N), ph, pw]
        top = np.argsort(-best, kind="stable")[:num_mult ** 2]
        order = np.lexsort((pw[top], ph[top]))                          # by row, then column
        top = top[order].reshape(num_mult, num_mult)
        for i in range(num_mult):                                       # each grid row sorted by column
            top[i] = top[i][np.argsort(pw[top[i]], kind="stable")]
        patches = [[self.get_patch(int(o), ph[o], pw[o], expand_mult=expand_mult) for o in row] for row in top]
        vals = best[top]
        opac = vals / (vals.max() if vals.max() > 0 else 1.0)
        return self._assemble(patches, opac), top.tolist()

    def vis_dataset(self, feature: int, *, subdiv_mult: int = 1, expand_mult: float = 1,
                    top_frac: float = 0.1) -> tuple[np.ndarray, list]:
        """Spatially-aware dataset examples: for every activation position (subdivided ``subdiv_mult`` times) the
        observation that activates direction ``feature`` most there (each observation used at most
        ``ceil(positions / (N * top_frac))`` times), cropped around the position; activation strength in alpha.

        Returns ``(image [4, H, W] RGBA channels-first, obs_indices [rows][cols])``."""
        check_scalar("subdiv_mult", subdiv_mult, int, low=1)
        acts_f = torch.from_numpy(np.ascontiguousarray(self.acts_reduced[..., feature], np.float32))[:, None]
        h, w = acts_f.shape[-2:]
        if subdiv_mult > 1:   # bilinear samples at the centres of the sub-cells
            acts_f = F.interpolate(acts_f, size=(h * subdiv_mult, w * subdiv_mult), mode="bilinear",
                                   align_corners=False)
        acts_sub = acts_f[:, 0].numpy()                                 # [N, h*s, w*s]
        N, hs, ws = acts_sub.shape
        pos_h = (np.arange(hs) + 0.5) / subdiv_mult - 0.5
        pos_w = (np.arange(ws) + 0.5) / subdiv_mult - 0.5
        max_rep = max(1.0, np.ceil(hs * ws / (N * top_frac)))
        (obs_idx,) = argmax_nd(acts_sub, axes=[0], max_rep=max_rep)     # [hs, ws]
        patches = [[self.get_patch(int(obs_idx[i, j]), pos_h[i], pos_w[j], expand_mult=expand_mult)
                    for j in range(ws)] for i in range(hs)]
        vals = acts_sub[obs_idx, np.arange(hs)[:, None], np.arange(ws)[None, :]]
        opac = vals / (vals.max() if vals.max() > 0 else 1.0)
        return self._assemble(patches, opac), obs_idx.tolist()

    def __repr__(self) -> str:
        return (f"LayerNMF(layer={self.layer!r}, features={self.features}, attr_layer_name={self.attr_layer_name!r}, "
                f"observations={len(self.observations)})")
