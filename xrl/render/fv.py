"""Feature visualization: image parameterisations, transforms and objectives (the lucid/lucent split), for torch.

The recipe that makes gradient visualizations of RL vision legible (Olah et al. 2017, "Feature Visualization";
Hilton et al. 2020, "Understanding RL Vision"), adapted to small observations (MinAtar: 10 x 10 x C object channels;
CoinRun: 64 x 64 RGB):
- :func:`fourier_image` - images parameterised by 2-d Fourier coefficients scaled by ``1/f^decay_power`` (lucid's
  ``fft_image``: optimisation then favours low frequencies instead of pixel noise), with *colour decorrelation*: the
  optimised channels are mixed by the square root of a colour covariance - the observations' own
  (:func:`color_statistics`), or lucid's ImageNet one - before the squashing, so that steps move along natural
  colour directions.
- a *prior that keeps colours in the observation range*: with ``color_stats`` the image starts at the observations'
  mean colour and is squashed by a sigmoid into each channel's observed ``[low, high]``; :func:`color_prior` adds a
  soft penalty on colours that are unlikely under the observations' colour distribution (Mahalanobis distance).
- *transformation robustness*: :func:`random_affine` (jitter + scale + rotation in one resampling, size kept, filled
  with the mean colour), :func:`jitter`, :func:`random_scale`, :func:`random_rotate`, :func:`pad`, :func:`compose`;
  :func:`robust_transforms` picks them by board size (a 10 x 10 board only tolerates a one-pixel jitter).
- objectives: :func:`direction` (lucid's ``direction_neuron``), :func:`channel`, :func:`l2`; plain callables
  ``objective(acts_dict) -> loss`` that get the activations of the layers they name.
- :func:`render_vis` - optimise with a seeded generator (no global RNG), returning numpy images [B, C, H, W];
  :func:`visualize_directions` - the whole recipe for directions in a layer (what ``LayerNMF.vis_traditional`` and
  the interface use).

Unlike lucent: no device global (the model's device is used), no global RNG, and hooks are always removed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xrl._utils import resolve_device, torch_generator
from xrl._validation import check_scalar, error_message
from xrl.hooks import INPUT, capture

__all__ = ["ColorStats", "color_statistics", "fourier_image", "pixel_image", "jitter", "random_scale",
           "random_rotate", "random_affine", "robust_transforms", "pad", "compose", "Objective", "direction", "channel",
           "l2", "color_prior", "render_vis", "visualize_directions"]

# lucid's colour correlation (square root of the ImageNet colour covariance), normalised as in lucid.
_COLOR_CORR = np.asarray([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32)
_COLOR_CORR = _COLOR_CORR / np.max(np.linalg.norm(_COLOR_CORR, axis=0))


def _freqs(h: int, w: int) -> np.ndarray:
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return np.sqrt(fx * fx + fy * fy)                                   # [h, w//2+1]


@dataclass(frozen=True)
class ColorStats:
    """Colour statistics of a set of observations, in the model's input units.

    Attributes
    ----------
    mean : ndarray [C]
        Mean of each channel.
    sqrt_cov : ndarray [C, C]
        Symmetric square root of the channel covariance (colour decorrelation).
    low, high : ndarray [C]
        Each channel's observed range (the 0.1 and 99.9 percentiles, so single outlier pixels do not widen it).
    shape : tuple (C, H, W)
        Observation shape.
    palette : ndarray [K, C]
        The observations' most common colours (k-means centres of their pixels), the support of :func:`color_prior`.
    """

    mean: np.ndarray
    sqrt_cov: np.ndarray
    low: np.ndarray
    high: np.ndarray
    shape: tuple
    palette: np.ndarray | None = None


def _kmeans(x: np.ndarray, k: int, seed: int, iters: int = 20) -> np.ndarray:
    """Plain k-means (k-means++ start) on rows of ``x`` [M, C] -> centres [k', C] (k' <= k distinct rows)."""
    rng = np.random.default_rng(seed)
    uniq = np.unique(x, axis=0)
    if len(uniq) <= k:
        return uniq.astype(np.float32)
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):                                                # k-means++ seeding
        d = np.min(((x[:, None, :] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
        centres.append(x[rng.choice(len(x), p=d / d.sum())] if d.sum() > 0 else x[rng.integers(len(x))])
    c = np.asarray(centres, np.float64)
    for _ in range(iters):
        label = ((x[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
        for j in range(k):
            members = x[label == j]
            if len(members):
                c[j] = members.mean(0)
    return c.astype(np.float32)


def color_statistics(obs: Any, *, max_pixels: int = 1_000_000, palette_size: int = 16, seed: int = 0) -> ColorStats:
    """Mean, covariance square root, range and palette of the channels of observations ``[N, C, H, W]``.

    uint8 observations are divided by 255 (the model's units for xrl agents); at most ``max_pixels`` pixels (drawn
    with ``seed``) are used, and 20,000 of them for the ``palette_size``-colour palette.
    """
    a = obs.detach().cpu().numpy() if isinstance(obs, torch.Tensor) else np.asarray(obs)
    if a.ndim != 4:
        raise ValueError(error_message("obs", "observations [N, C, H, W]", a))
    shape = tuple(int(s) for s in a.shape[1:])
    x = (a.astype(np.float32) / 255.0) if a.dtype == np.uint8 else a.astype(np.float32)
    pix = np.moveaxis(x, 1, -1).reshape(-1, shape[0])                   # [N*H*W, C]
    if len(pix) > max_pixels:
        pix = pix[np.random.default_rng(seed).choice(len(pix), max_pixels, replace=False)]
    if not np.isfinite(pix).all():
        raise ValueError(error_message("obs", "finite values", a, "clean the observations first"))
    mean = pix.mean(0)
    cov = np.atleast_2d(np.cov(pix, rowvar=False)) if len(pix) > 1 else np.zeros((shape[0], shape[0]))
    evals, evecs = np.linalg.eigh(cov.astype(np.float64))
    sqrt_cov = (evecs * np.sqrt(np.clip(evals, 0, None))) @ evecs.T
    low, high = np.percentile(pix, 0.1, axis=0), np.percentile(pix, 99.9, axis=0)
    flat = high - low < 1e-6
    low, high = np.where(flat, pix.min(0), low), np.where(flat, pix.max(0), high)
    high = np.where(high - low < 1e-6, low + 1.0, high)               # a constant channel: give it a unit range
    rng = np.random.default_rng(seed)
    sample = pix[rng.choice(len(pix), min(len(pix), 20_000), replace=False)].astype(np.float64)
    palette = _kmeans(sample, palette_size, seed)
    return ColorStats(mean.astype(np.float32), sqrt_cov.astype(np.float32), low.astype(np.float32),
                      high.astype(np.float32), shape, palette)


def fourier_image(shape: Sequence[int], batch: int = 1, *, sd: float = 0.01, decay_power: float = 1.0,
                  decorrelate: bool | None = None, color_stats: ColorStats | None = None, seed: int | None = 0,
                  device: Any = "cpu") -> tuple[list[torch.Tensor], Callable[[], torch.Tensor]]:
    """Fourier-parameterised images ``[batch, C, H, W]``.

    Parameters
    ----------
    shape : (C, H, W)
    batch : int
    sd : float, default 0.01
        Scale of the random initial spectrum (the image starts close to its base colour).
    decay_power : float, default 1.0
        Spectrum scaling ``1 / f^decay_power``: larger values favour smoother images.
    decorrelate : bool, optional
        Mix the channels by a colour-covariance square root (default: for 3 channels, or whenever ``color_stats``
        is given). Without ``color_stats`` lucid's ImageNet colour correlation is used.
    color_stats : ColorStats, optional
        The observations' statistics (:func:`color_statistics`): the image starts at their mean colour, steps follow
        their colour covariance, and each channel is squashed into its observed ``[low, high]``. Without it the image
        is squashed into [0, 1] around grey (lucid).
    seed : int or None
    device : device

    Returns
    -------
    ``(params, image_fn)``: optimise ``params``; ``image_fn()`` gives the current images.
    """
    C, H, W = (int(s) for s in shape)
    check_scalar("batch", batch, int, low=1)
    dev = torch.device(device)
    gen = torch_generator(seed, "cpu")
    spectrum = sd * torch.randn(batch, C, H, W // 2 + 1, 2, generator=gen)
    param = spectrum.to(dev).requires_grad_(True)
    scale = 1.0 / np.maximum(_freqs(H, W), 1.0 / max(H, W)) ** decay_power
    scale = torch.tensor(scale * np.sqrt(H * W), dtype=torch.float32, device=dev)   # [H, W//2+1]
    if color_stats is not None:
        if tuple(color_stats.shape[:1]) != (C,):
            raise ValueError(error_message("color_stats", f"statistics of {C}-channel observations", color_stats.shape))
        corr = np.asarray(color_stats.sqrt_cov, np.float32)
        norm = float(np.max(np.linalg.norm(corr, axis=0)))
        corr = corr / norm if norm > 0 else np.eye(C, dtype=np.float32)
        low = torch.tensor(color_stats.low, device=dev).view(1, C, 1, 1)
        span = torch.tensor(color_stats.high - color_stats.low, device=dev).view(1, C, 1, 1)
        frac = np.clip((color_stats.mean - color_stats.low) / (color_stats.high - color_stats.low), 0.02, 0.98)
        base = torch.tensor(np.log(frac / (1 - frac)), dtype=torch.float32, device=dev).view(1, C, 1, 1)
        decor = True if decorrelate is None else decorrelate
    else:
        corr = _COLOR_CORR if C == 3 else np.eye(C, dtype=np.float32)
        low = torch.zeros(1, C, 1, 1, device=dev)
        span = torch.ones(1, C, 1, 1, device=dev)
        base = torch.zeros(1, C, 1, 1, device=dev)
        decor = (C == 3) if decorrelate is None else decorrelate
    corr_t = torch.tensor(np.asarray(corr, np.float32), device=dev)

    def image_fn() -> torch.Tensor:
        spec = torch.view_as_complex(param) * scale                     # [B, C, H, W//2+1]
        img = torch.fft.irfftn(spec, s=(H, W), norm="ortho")             # [B, C, H, W]
        img = img / 4.0                                                  # lucid's magic constant
        if decor:
            img = torch.einsum("bchw,dc->bdhw", img, corr_t)
        return low + span * torch.sigmoid(base + img)

    return [param], image_fn


def pixel_image(shape: Sequence[int], batch: int = 1, *, sd: float = 0.1, seed: int | None = 0, device: Any = "cpu"
                ) -> tuple[list[torch.Tensor], Callable[[], torch.Tensor]]:
    """Plain pixel parameterisation through a sigmoid (useful for tiny boards)."""
    C, H, W = (int(s) for s in shape)
    gen = torch_generator(seed, "cpu")
    param = (sd * torch.randn(batch, C, H, W, generator=gen)).to(device).requires_grad_(True)
    return [param], lambda: torch.sigmoid(param)


#: Key under which :func:`render_vis` passes the fraction of the optimisation done (0 ... 1) to objectives.
PROGRESS = "__progress__"

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def jitter(d: int) -> Transform:
    """Random translation by up to ``d`` pixels (crop of a reflect-padded image)."""
    check_scalar("d", d, int, low=0)

    def t(img: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if d == 0:
            return img
        H, W = img.shape[-2:]
        padded = F.pad(img, (d, d, d, d), mode="replicate")
        dy, dx = (int(v) for v in torch.randint(0, 2 * d + 1, (2,), generator=gen))
        return padded[..., dy:dy + H, dx:dx + W]
    return t


def pad(w: int, value: float = 0.5) -> Transform:
    check_scalar("w", w, int, low=0)
    return lambda img, gen: F.pad(img, (w, w, w, w), value=value) if w else img


def random_scale(scales: Sequence[float]) -> Transform:
    """Rescale by a factor drawn from ``scales`` (bilinear), keeping the size by crop/pad to the original."""
    scales = list(scales)

    def t(img: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        s = scales[int(torch.randint(0, len(scales), (1,), generator=gen))]
        H, W = img.shape[-2:]
        out = F.interpolate(img, scale_factor=s, mode="bilinear", align_corners=False)
        h, w = out.shape[-2:]
        if h >= H:
            y, x = (h - H) // 2, (w - W) // 2
            return out[..., y:y + H, x:x + W]
        return F.pad(out, ((W - w) // 2, W - w - (W - w) // 2, (H - h) // 2, H - h - (H - h) // 2), mode="replicate")
    return t


def random_rotate(degrees: Sequence[float], fill: float | Sequence[float] = 0.5) -> Transform:
    """Rotate by an angle (degrees) drawn from ``degrees`` about the centre, size kept, corners filled with ``fill``."""
    return random_affine(translate=0, scales=(1.0,), degrees=degrees, fill=fill)


def random_affine(translate: float = 2, scales: Sequence[float] = (1.0,), degrees: Sequence[float] = (0.0,),
                  fill: float | Sequence[float] = 0.5) -> Transform:
    """Jitter, scale and rotation in one bilinear resampling (size kept), drawn per image.

    Parameters
    ----------
    translate : float, default 2
        Largest shift in pixels (uniform in ``[-translate, translate]`` along each axis).
    scales : sequence of float
        Zoom factors to draw from (> 1 enlarges).
    degrees : sequence of float
        Rotation angles to draw from.
    fill : float or per-channel sequence, default 0.5
        Colour of the area the image leaves (e.g. the observations' mean colour).
    """
    scales = [float(v) for v in scales]
    degrees = [float(v) for v in degrees]
    if not scales or not degrees or min(scales) <= 0:
        raise ValueError(error_message("scales/degrees", "non-empty lists with positive scales", (scales, degrees)))

    def t(img: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        B, C, H, W = img.shape
        s = torch.tensor(scales)[torch.randint(0, len(scales), (B,), generator=gen)]
        ang = torch.tensor(degrees)[torch.randint(0, len(degrees), (B,), generator=gen)] * (np.pi / 180)
        shift = (torch.rand(B, 2, generator=gen) * 2 - 1) * float(translate)
        cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
        # output pixel -> input pixel in normalised [-1, 1] coordinates (align_corners=False)
        theta = torch.stack([torch.stack([cos, -sin * H / W, -shift[:, 0] * 2 / W], 1),
                             torch.stack([sin * W / H, cos, -shift[:, 1] * 2 / H], 1)], 1)   # [B, 2, 3]
        theta = theta.to(img.device, img.dtype)
        grid = F.affine_grid(theta, [B, C, H, W], align_corners=False)
        fill_t = torch.as_tensor(fill, dtype=img.dtype, device=img.device).reshape(1, -1, 1, 1)
        # resample the difference from the fill colour with zero padding: outside the image the result is the fill
        moved = F.grid_sample(img - fill_t, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return moved + fill_t
    return t


def robust_transforms(shape: Sequence[int], fill: float | Sequence[float] = 0.5) -> list[Transform]:
    """Transformation robustness suited to the observation size ``(C, H, W)``.

    Boards of at most 16 pixels get a one-pixel jitter (an object is one cell; scaling or rotating a 10 x 10 grid
    destroys it). Larger images get lucid's recipe scaled to the image: a shift of up to 1/16 of the side, scales
    0.9-1.1, rotations of up to 10 degrees (one resampling), then a small jitter.
    """
    _, H, W = (int(v) for v in shape)
    side = min(H, W)
    if side <= 16:
        return [jitter(1)]
    shift = max(1, side // 16)
    return [random_affine(translate=shift, scales=[0.9 + 0.02 * i for i in range(11)],
                          degrees=list(range(-10, 11)) + [0] * 5, fill=fill),
            jitter(max(1, shift // 2))]


def compose(transforms: Sequence[Transform]) -> Transform:
    def t(img, gen):
        for f in transforms:
            img = f(img, gen)
        return img
    return t


@dataclass
class Objective:
    """A loss to MINIMISE from layer activations: ``fn(acts: dict[str, Tensor]) -> scalar``; ``layers`` it reads."""
    fn: Callable[[dict], torch.Tensor]
    layers: list[str] = field(default_factory=list)

    def __call__(self, acts: dict) -> torch.Tensor:
        return self.fn(acts)

    def __add__(self, other: "Objective") -> "Objective":
        return Objective(lambda a: self.fn(a) + other.fn(a), self.layers + other.layers)

    def __sub__(self, other: "Objective") -> "Objective":
        return Objective(lambda a: self.fn(a) - other.fn(a), self.layers + other.layers)

    def __mul__(self, k: float) -> "Objective":
        return Objective(lambda a: k * self.fn(a), self.layers)

    __rmul__ = __mul__

    def __radd__(self, other):  # sum([...]) starts from 0
        return self if other == 0 else NotImplemented


def direction(layer: str, vec: Any, batch: int | None = None, *, position: tuple[int, int] | None = None,
              cossim_pow: float = 0.0) -> Objective:
    """Maximise ``<acts[b, :, y, x], vec>`` at the central (or given) position (lucid's ``direction_neuron``).

    ``batch``: the image index it applies to (None: all images). For 2-d activations ``[B, C]`` the position is ignored.
    ``cossim_pow > 0`` multiplies the dot product by ``max(cos(acts, vec), 0.1) ** cossim_pow`` (lucid's
    ``direction_neuron_cossim``, from Activation Atlas): the image must make the activation point *along* ``vec``
    rather than just grow, which stops directions sharing one generic image (e.g. brightness).
    """
    v = torch.as_tensor(np.asarray(vec, np.float32))

    def fn(acts):
        a = acts[layer]
        vv = v.to(a.device, a.dtype)
        if a.ndim == 4:
            y, x = position if position is not None else (a.shape[2] // 2, a.shape[3] // 2)
            a = a[:, :, y, x]                                           # [B, C]
        s = a @ vv                                                      # [B]
        if cossim_pow:
            cos = s / (a.norm(dim=1) * vv.norm() + 1e-8)
            s = s * cos.clamp_min(0.1) ** cossim_pow
        return -(s.sum() if batch is None else s[batch])
    return Objective(fn, [layer])


def channel(layer: str, n: int, batch: int | None = None) -> Objective:
    """Maximise the mean activation of channel ``n``."""
    def fn(acts):
        a = acts[layer][:, n]
        a = a.reshape(a.shape[0], -1).mean(1)
        return -(a.sum() if batch is None else a[batch])
    return Objective(fn, [layer])


def l2(layer: str) -> Objective:
    """The L2 norm of a layer's activations (subtract a multiple of it to keep activations small)."""
    return Objective(lambda acts: -acts[layer].pow(2).sum().sqrt(), [layer])


def color_prior(stats: ColorStats, coeff: float = 1.0, temperature: float = 0.01, ramp: float = 0.5) -> Objective:
    """A prior that keeps colours those of the observations: ``coeff`` times the mean over pixels of the squared
    distance of each pixel's colour to the nearest colour of the observations' palette (a soft minimum with
    ``temperature``, in squared input units). Game frames are drawn from a small palette; colours far from all of it
    (the saturated corners of the colour cube where unconstrained optimisation ends) are what makes gradient
    visualizations unreadable. The weight grows linearly from 0 over the first ``ramp`` of the optimisation (the
    image first finds what raises the objective, then settles on palette colours; a full-strength start sticks in
    the first palette colours it meets). Reads the image (``acts["input"]``) and the progress of
    :func:`render_vis`."""
    if stats.palette is None:
        raise ValueError(error_message("stats", "ColorStats with a palette (from color_statistics)", stats))
    pal = torch.tensor(np.asarray(stats.palette, np.float32))            # [K, C]

    def fn(acts):
        img = acts[INPUT]
        p = pal.to(img.device, img.dtype)
        d = ((img.unsqueeze(1) - p.view(1, *p.shape, 1, 1)) ** 2).sum(2)    # [B, K, H, W]
        soft_min = -temperature * torch.logsumexp(-d / temperature, dim=1)    # [B, H, W]
        weight = min(1.0, float(acts.get(PROGRESS, 1.0)) / ramp) if ramp > 0 else 1.0
        return coeff * weight * soft_min.mean() * img.shape[0]
    return Objective(fn, [INPUT])


def render_vis(model: nn.Module, objective: Objective, param_f: Callable[[], tuple], *,
               transforms: Sequence[Transform] = (), steps: int = 256, lr: float = 0.05, seed: int | None = 0,
               device: Any = None, verbose: bool = False, progress: bool = False, desc: str = "feature vis"
               ) -> np.ndarray:
    """Optimise the parameterised images to minimise ``objective``; returns numpy ``[B, C, H, W]``.

    ``param_f()`` returns ``(params, image_fn)`` (see :func:`fourier_image`). Objectives reading ``"input"`` get the
    image before the transforms. The model is not modified; its training/eval mode is left as it is (call
    ``model.eval()`` first for batch-norm models). ``progress`` shows a progress bar over the steps.
    """
    check_scalar("steps", steps, int, low=1)
    dev = resolve_device(device, model)
    params, image_fn = param_f()
    if not isinstance(params, (list, tuple)) or not callable(image_fn):
        raise TypeError(error_message("param_f", "a function returning (params, image_fn)", type(params).__name__))
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch_generator(seed, "cpu")
    t = compose(list(transforms))
    layers = sorted(set(objective.layers) - {INPUT})
    first = last = None
    from tqdm.auto import tqdm

    for i in tqdm(range(steps), desc=desc, unit="step", disable=not progress, leave=False, dynamic_ncols=True):
        opt.zero_grad(set_to_none=True)
        raw = image_fn()
        img = t(raw, gen).to(dev)
        with capture(model, layers, detach=False) as acts:
            model(img)
        acts = dict(acts)
        acts[INPUT] = raw
        acts[PROGRESS] = i / max(steps - 1, 1)
        loss = objective(acts)
        loss.backward()
        opt.step()
        if i == 0:
            first = float(loss.detach())
        last = float(loss.detach())
    if verbose:
        print(f"render_vis: loss {first:.4g} -> {last:.4g} after {steps} steps")
    with torch.no_grad():
        return image_fn().detach().cpu().numpy()


def visualize_directions(model: nn.Module, layer: str, directions: Any, obs_shape: Sequence[int], *,
                         color_stats: ColorStats | None = None, steps: int = 512, lr: float = 0.05,
                         transforms: Sequence[Transform] | None = None, prior_coeff: float = 100.0,
                         decay_power: float = 1.5, cossim_pow: float = 0.0, decorrelate: bool | None = None,
                         extra_objective: Objective | None = None, param: str = "fourier", seed: int | None = 0,
                         device: Any = None, progress: bool = False, desc: str = "feature vis") -> np.ndarray:
    """Gradient feature visualization of directions in ``layer``'s channel space, with the legibility recipe.

    Maximises ``<acts[:, :, y0, x0], directions[i]> / (|directions[i]| * r)`` at the central position for image
    ``i`` (``r``: the layer's activation norm there on a plain mean-colour image, so the objective is scale-free),
    through the Fourier parameterisation (:func:`fourier_image`, ``1/f^decay_power``), with transformation robustness
    (:func:`robust_transforms`: jitter, scale and rotation on large images), and, when ``color_stats`` is given, the
    observations' colour range and :func:`color_prior` (colours near the observations' palette).

    Colour decorrelation: lucid decorrelates with ImageNet's colour covariance; ``fourier_image`` can decorrelate
    with the observations' own. On CoinRun frames both make the luminance axis dominate so strongly that every
    visualization ends two-tone (dark sky / light floor), so with ``color_stats`` the default here is
    ``decorrelate=False`` and the palette prior keeps colours natural instead (docs/vision.md shows the comparison).

    Parameters
    ----------
    model : nn.Module
    layer : str
    directions : array [K, C]
        One direction per image (e.g. ``LayerNMF.channel_dirs``).
    obs_shape : (C, H, W)
    color_stats : ColorStats, optional
        The observations' colour statistics (:func:`color_statistics`); strongly recommended: without them colours
        are lucid's ImageNet defaults, which saturate on game frames.
    steps : int, default 512
    lr : float, default 0.05
    transforms : list, optional
        Default :func:`robust_transforms` for ``obs_shape`` (filled with the mean colour).
    prior_coeff : float, default 100
        Weight of :func:`color_prior` against the scale-free objective (0 turns it off).
    decay_power : float, default 1.5
        Spectrum decay of the Fourier parameterisation (lucid's 1.0 leaves more pixel noise on 64 x 64 frames).
    cossim_pow : float, default 0
        See :func:`direction`.
    decorrelate : bool, optional
        Colour decorrelation (see above); default False with ``color_stats``, lucid's ImageNet one without.
    extra_objective : Objective, optional
        Added to the loss (e.g. ``0.1 * -l2("embedder.block1")`` to keep early activations small).
    param : {"fourier", "pixel"}
    seed : int or None
    device : optional
    progress : bool, default False

    Returns
    -------
    ndarray [K, C, H, W] in the model's input units.
    """
    dirs = np.atleast_2d(np.asarray(directions, np.float32))
    if dirs.ndim != 2:
        raise ValueError(error_message("directions", "an array [K, C]", dirs))
    obs_shape = tuple(int(v) for v in obs_shape)
    dev = resolve_device(device, model)
    if param not in ("fourier", "pixel"):
        raise ValueError(error_message("param", "'fourier' or 'pixel'", param))
    # Scale-free objective: unit directions divided by the activation norm the layer has on the starting image, so
    # that the prior's weight means the same for every layer and model.
    start = torch.tensor(np.broadcast_to((color_stats.mean if color_stats is not None else np.full(obs_shape[0], .5)
                                          ).reshape(1, -1, 1, 1), (1,) + obs_shape).copy(), device=dev)
    with torch.no_grad(), capture(model, [layer]) as got:
        model(start)
    a0 = got[layer]
    centre = a0[:, :, a0.shape[2] // 2, a0.shape[3] // 2] if a0.ndim == 4 else a0
    ref = max(float(centre.norm(dim=1).mean()), 1e-6)
    units = dirs / (np.linalg.norm(dirs, axis=1, keepdims=True) + 1e-12) / ref
    obj = sum(direction(layer, units[i], batch=i, cossim_pow=cossim_pow) for i in range(len(dirs)))
    if color_stats is not None and prior_coeff and color_stats.palette is not None:
        obj = obj + color_prior(color_stats, prior_coeff)
    if extra_objective is not None:
        obj = obj + extra_objective
    if decorrelate is None:
        decorrelate = False if color_stats is not None else None
    if transforms is None:
        fill = color_stats.mean.tolist() if color_stats is not None else 0.5
        transforms = robust_transforms(obs_shape, fill=fill)
    if param == "fourier":
        param_f = lambda: fourier_image(obs_shape, len(dirs), color_stats=color_stats,  # noqa: E731
                                        decay_power=decay_power, decorrelate=decorrelate, seed=seed, device=dev)
    else:
        param_f = lambda: pixel_image(obs_shape, len(dirs), seed=seed, device=dev)  # noqa: E731
    return render_vis(model, obj, param_f, transforms=transforms, steps=steps, lr=lr, seed=seed, device=dev,
                      progress=progress, desc=desc)
