"""LayerNMF: NMF directions in a layer's activation space and their visualizations (lucid rl_util, in torch).

``LayerNMF = hooks (activations) + attribution (optional) + xrl.nmf.NMF + render``. The directions ``channel_dirs``
are fitted either on the activations of ``layer`` or, when ``attr_layer_name`` is given (e.g. ``"fc_value"``), on the
positive and negative parts of the integrated-gradient attributions of that output to ``layer`` (the paper's choice).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xrl import io
from xrl._utils import eval_mode, resolve_device
from xrl._validation import check_scalar, error_message
from xrl.attribution import to_tensor
from xrl.hooks import resolve_layer_name
from xrl.nmf import NMF
from xrl.render.fv import l2
from xrl.render.images import observation_rgb
from xrl.vision.core import ReceptiveField, _check_obs, get_acts, get_attr, receptive_field

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
    progress : bool, default True
        Show a progress bar over the fitting stages (and the attributions, the long part, observation by
        observation).

    The model runs in eval mode while fitting (every submodule's own mode is restored afterwards, also after an
    error; BatchNorm statistics are not updated). :meth:`save` / :meth:`load` keep a fitted LayerNMF.

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
                 batch_size: int = 256, nmf_kwargs: dict | None = None, seed: int = 0, device: Any = None,
                 progress: bool = True):
        from tqdm.auto import tqdm

        if not isinstance(model, nn.Module):
            raise TypeError(error_message("model", "a torch.nn.Module", type(model).__name__))
        check_scalar("batch_size", batch_size, int, low=1)
        check_scalar("seed", seed, int)
        if features is not None:
            check_scalar("features", features, int, low=1)
        self.model = model
        self.layer = layer
        self.layer_name = layer
        self.features = features
        self.attr_layer_name = attr_layer_name
        self.batch_size = batch_size
        self.seed = seed
        self.device = resolve_device(device, model)
        obs_t, _ = to_tensor("observations", observations, self.device, model)
        _check_obs(model, obs_t)
        self.obs_shape = tuple(obs_t.shape[1:])
        self.observations = obs_t.cpu().numpy()
        stages = 3 + (features is not None and attr_layer_name is not None)
        # the model runs in eval mode throughout (every submodule's own mode is restored, also after an error)
        with eval_mode(model), tqdm(total=stages, disable=not progress, desc="LayerNMF") as bar:
            bar.set_postfix_str("activations")
            acts = _to_nhwc(get_acts(model, layer, self.observations, batch_size=batch_size, device=self.device))
            if acts.ndim != 4:
                raise ValueError(error_message("layer", "a convolutional layer with [B, C, H, W] activations", layer,
                                               f"its output has shape {acts.shape}"))
            bar.update(1)
            self.acts = acts                                                 # [N, h, w, C]
            self._fit(acts, attr_opts, nmf_kwargs, bar, progress)
            bar.set_postfix_str("receptive field")
            self.receptive_field = receptive_field(model, layer, self.obs_shape, device=self.device)
            bar.update(1)
        self._set_obs_full(obs_full)
        self._pad = 0
        self._padded = None

    def _fit(self, acts: np.ndarray, attr_opts: dict | None, nmf_kwargs: dict | None, bar, progress: bool) -> None:
        """NMF directions of the activations ``[N, h, w, C]`` (or of the attributions to them)."""
        C, features = acts.shape[-1], self.features
        if features is None:
            self.nmf = None
            self.channel_dirs = np.eye(C, dtype=np.float32)
            self.acts_reduced = acts.copy()
            bar.update(1)
            return
        kw = dict(nmf_kwargs or {})
        kw.setdefault("seed", self.seed)
        self.nmf = NMF(features, **kw)
        if self.attr_layer_name is None:
            bar.set_postfix_str("NMF")
            flat = acts.reshape(-1, C)                                       # [N, h, w, C] -> [N*h*w, C]
            if flat.min() >= 0:
                self.acts_reduced = self.nmf.fit_transform(flat).reshape(acts.shape[:-1] + (features,))
            else:   # signed activations (residual sums): factorise positive and negative parts together
                self.nmf.fit(np.concatenate([np.maximum(flat, 0), np.maximum(-flat, 0)], 0))
                self.acts_reduced = self._reduce(acts)
        else:
            bar.set_postfix_str("attributions")
            opts = {"integrate_steps": 10, **(attr_opts or {})}
            attrs = _to_nhwc(get_attr(self.model, self.attr_layer_name, self.layer, self.observations,
                                      batch_size=self.batch_size, device=self.device, progress=progress, **opts))
            self.attrs = attrs
            bar.update(1)
            bar.set_postfix_str("NMF")
            signed = np.concatenate([np.maximum(attrs, 0), np.maximum(-attrs, 0)], 0).reshape(-1, C)
            self.nmf.fit(signed)                                             # [2*N*h*w, C]
            self.acts_reduced = self._reduce(acts)
        self.channel_dirs = np.asarray(self.nmf.components_, dtype=np.float32)
        bar.update(1)

    def _set_obs_full(self, obs_full: Any) -> None:
        full = self.observations if obs_full is None else np.asarray(obs_full)
        self.obs_full = full
        self.obs_rgb = observation_rgb(full, layout="chw" if full.shape[1:] == self.obs_shape else None)  # [N,H,W,3]
        if self.obs_rgb.shape[:3] != (len(self.observations),) + self.obs_shape[1:]:
            raise ValueError(error_message("obs_full", f"images with N={len(self.observations)} and H x W = "
                                           f"{self.obs_shape[1]} x {self.obs_shape[2]}", full))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted directions and the arrays they were fitted on to the directory ``path``
        (``layer_nmf.safetensors`` + ``layer_nmf.json``) as one transaction (:func:`xrl.io.atomic_directory`).

        The model is not saved (save it with its own saver); :meth:`load` takes it back and checks that it is the
        one the directions were fitted with."""
        tensors = {"observations": self.observations, "acts": self.acts, "acts_reduced": self.acts_reduced,
                   "channel_dirs": self.channel_dirs}
        if getattr(self, "attrs", None) is not None:
            tensors["attrs"] = self.attrs
        separate_full = self.obs_full is not self.observations
        if separate_full:
            tensors["obs_full"] = self.obs_full
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}
        rf = self.receptive_field
        config = {"class": "xrl.vision.LayerNMF", "layer": self.layer, "features": self.features,
                  "attr_layer_name": self.attr_layer_name, "batch_size": self.batch_size, "seed": self.seed,
                  "obs_shape": list(self.obs_shape), "obs_full": separate_full,
                  "receptive_field": {"stride": list(rf.stride), "offset": list(rf.offset), "size": list(rf.size),
                                      "measured": rf.measured}}
        if self.nmf is not None:
            nmf_tensors, config["nmf"] = self.nmf.state()
            tensors.update({f"nmf.{k}": v for k, v in nmf_tensors.items()})
        path = Path(path)
        with io.atomic_directory(path) as tmp:
            io.save_tensors(tmp / "layer_nmf.safetensors", tensors)
            io.save_json(tmp / "layer_nmf.json", config)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, model: nn.Module, *, device: Any = None, check: bool = True
             ) -> "LayerNMF":
        """Read a LayerNMF written by :meth:`save`, attached to ``model`` (manifest checked, nothing unpickled).

        With ``check`` (default), the activations of the layer for the first saved observations are recomputed and
        must match the saved ones: a different model (or changed weights) raises ``ValueError`` instead of
        explaining the wrong network."""
        if not isinstance(model, nn.Module):
            raise TypeError(error_message("model", "a torch.nn.Module", type(model).__name__))
        path = Path(path)
        io.verify_directory(path)
        config = io.load_json(path / "layer_nmf.json")
        tensors = io.load_tensors(path / "layer_nmf.safetensors")
        needed = {"observations", "acts", "acts_reduced", "channel_dirs"}
        if config.get("class") != "xrl.vision.LayerNMF" or not needed <= set(tensors):
            raise ValueError(f"{path}: not a saved xrl LayerNMF (expected class 'xrl.vision.LayerNMF' and the "
                             f"arrays {sorted(needed)}); re-save it with LayerNMF.save")
        self = cls.__new__(cls)
        self.model, self.layer, self.layer_name = model, config["layer"], config["layer"]
        self.features, self.attr_layer_name = config["features"], config["attr_layer_name"]
        self.batch_size, self.seed = config["batch_size"], config["seed"]
        self.device = resolve_device(device, model)
        self.obs_shape = tuple(config["obs_shape"])
        for key in ("observations", "acts", "acts_reduced", "channel_dirs", "attrs"):
            if key in tensors:
                setattr(self, key, tensors[key].numpy())
        self.nmf = None
        if config.get("nmf") is not None:
            nmf_tensors = {k[len("nmf."):]: v for k, v in tensors.items() if k.startswith("nmf.")}
            self.nmf = NMF.from_state(nmf_tensors, config["nmf"], f"{path} (nmf)")
        rf = config["receptive_field"]
        self.receptive_field = ReceptiveField(tuple(rf["stride"]), tuple(rf["offset"]), tuple(rf["size"]),
                                              bool(rf["measured"]))
        if check:
            resolve_layer_name(model, self.layer)
            k = min(8, len(self.observations))
            fresh = _to_nhwc(get_acts(model, self.layer, self.observations[:k], batch_size=self.batch_size,
                                      device=self.device))
            saved = self.acts[:k]
            scale = float(np.abs(saved).max()) or 1.0
            if fresh.shape != saved.shape or not np.allclose(fresh, saved, rtol=1e-4, atol=1e-5 * scale):
                diff = float(np.abs(fresh - saved).max()) if fresh.shape == saved.shape else float("nan")
                raise ValueError(error_message(
                    "model", f"the network this LayerNMF was fitted with (layer {self.layer!r})", type(model).__name__,
                    f"its activations on the saved observations differ (max difference {diff:.3g}); pass that model, "
                    "or check=False to attach another one knowingly"))
        self._set_obs_full(tensors["obs_full"].numpy() if config.get("obs_full") else None)
        self._pad = 0
        self._padded = None
        return self

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
