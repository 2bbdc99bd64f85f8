"""THE non-negative matrix factorisation: ``X ~= W @ H`` with ``W, H >= 0``, in torch on CPU or GPU.

Used by :mod:`xrl.vision` (LayerNMF over activations or attributions) and by the world-model explanations.

Solver: accelerated HALS (hierarchical alternating least squares, Cichocki & Phan 2009; the inner-loop acceleration of
Gillis & Glineur 2012, "Accelerated multiplicative updates and hierarchical ALS algorithms for nonnegative matrix
factorization"). Each outer iteration computes the expensive products ``X H^T`` and ``W^T X`` once and then makes
several cheap exact coordinate-descent sweeps over the columns of ``W`` (resp. rows of ``H``), which only need the
``r x r`` Gram matrices. Every coordinate step is an exact minimisation, so the loss never rises. The initialisation
(``"nndsvd"``, ``"nndsvda"``, ``"nndsvdar"`` of Boutsidis & Gallopoulos 2008, or ``"random"``) takes the singular vectors
from the eigen-decomposition of the small Gram matrix (``K x K`` for tall ``X``), which is exact and cheap when one
dimension is small (LayerNMF: ``K`` = channels). Tall matrices are first factorised on a random eighth of their rows
and the fit on all rows starts from those components (``init_subsample``).

Example
-------
>>> import numpy as np
>>> X = np.abs(np.random.default_rng(0).normal(size=(100, 12))).astype(np.float32)
>>> nmf = NMF(n_components=3, seed=0)
>>> W = nmf.fit_transform(X)
>>> W.shape, nmf.components_.shape
((100, 3), (3, 12))
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xrl._utils import resolve_device, torch_generator
from xrl._validation import check_choice, check_is_fitted, check_scalar, error_message

try:  # one warning class users may already filter
    from sklearn.exceptions import ConvergenceWarning
except Exception:  # pragma: no cover - scikit-learn is a dependency
    class ConvergenceWarning(UserWarning):
        """NMF stopped at max_iter before reaching tol."""

__all__ = ["NMF", "ConvergenceWarning"]

_INITS = ("nndsvd", "nndsvda", "nndsvdar", "random")
_BLOCK = 512  # rows per float32 block of W^T X and W^T W before summing blocks in float64
_TOL_WINDOW = 3  # tol applies to the mean improvement over this many accepted iterations
_SUBSAMPLE_MIN_ROWS = 8192  # "auto" pre-fits on a row subsample only when it has at least this many rows
_EPS = 1e-6  # nndsvd: entries below this are treated as zero (as scikit-learn)


def _as_matrix(name: str, X: Any, device: torch.device | None) -> tuple[torch.Tensor, bool, Any]:
    """X -> 2-d float tensor on the work device; also whether the input was numpy and its original device."""
    if isinstance(X, torch.Tensor):
        is_numpy, orig = False, X.device
        t = X.detach()
        if not t.is_floating_point():
            t = t.float()
    else:
        is_numpy, orig = True, None
        arr = np.asarray(X)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise TypeError(error_message(name, "a numeric array or tensor", arr))
        if arr.dtype != np.float64:
            arr = arr.astype(np.float32, copy=False)
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.ndim != 2:
        raise ValueError(error_message(name, "a 2-d matrix [n_samples, n_features]", t,
                                       "flatten leading dimensions first, e.g. X.reshape(-1, X.shape[-1])"))
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(error_message(name, "a non-empty matrix", t))
    if device is not None:
        t = t.to(device)
    # one min/max pass (NaN propagates into both, inf shows in one): 20x cheaper than counting isfinite on CPU
    mn, mx = (float(v) for v in torch.aminmax(t))
    if not (math.isfinite(mn) and math.isfinite(mx)):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(error_message(name, "finite values", t, f"{bad} entries are NaN or inf"))
    if mn < 0:
        raise ValueError(error_message(name, "non-negative values (NMF factorises non-negative data)", t,
                                       f"its minimum is {mn:.4g}; split signed data into positive and negative parts, "
                                       "e.g. np.concatenate([np.maximum(X, 0), np.maximum(-X, 0)])"))
    return t.contiguous(), is_numpy, orig


def _squared_norm(X: torch.Tensor) -> float:
    """``||X||_F^2`` accurate to ~1e-7 relative: float32 pairwise sums over 1M-element pieces, summed in float64.

    The error test in ``_iterate`` subtracts numbers ~25x larger than the squared error, so this constant needs
    ~1e-7; ``torch.dot`` pieces were 3x faster but off by 1.6e-6 on the benchmark's activations.
    """
    if X.device.type != "cpu":
        return float(torch.linalg.vector_norm(X, dtype=torch.float64)) ** 2
    return math.fsum(float(torch.sum(piece * piece)) for piece in X.reshape(-1).split(1 << 20))


def _cross_products(Wt: torch.Tensor, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``W^T X`` [r, K] and ``W^T W`` [r, r] in float64 from float32 products over blocks of ``_BLOCK`` rows.

    Each block is one matrix of a single batched product (float32 sums of ``_BLOCK`` terms, ~1e-7 relative); the
    blocks are summed in float64. One float32 product over all rows was off by up to 2e-5 relative for ``W^T W``,
    which the error test amplifies ~25x - enough to accept a worse iterate. Also faster than one call per block.
    """
    r, n = Wt.shape
    K = X.shape[1]
    nb = n // _BLOCK
    m = nb * _BLOCK
    WX = torch.zeros(r, K, dtype=torch.float64, device=X.device)
    WtW = torch.zeros(r, r, dtype=torch.float64, device=X.device)
    if nb:
        Wb = Wt[:, :m].reshape(r, nb, _BLOCK).transpose(0, 1)          # [nb, r, B] (a view)
        WX += torch.bmm(Wb, X[:m].view(nb, _BLOCK, K)).sum(0, dtype=torch.float64)
        WtW += torch.bmm(Wb, Wb.transpose(1, 2)).sum(0, dtype=torch.float64)
    if m < n:                                                           # the last rows (< _BLOCK)
        Wr = Wt[:, m:]
        WX += (Wr @ X[m:]).double()
        WtW += (Wr @ Wr.T).double()
    return WX, WtW


def _rank_floor(S: torch.Tensor) -> float:
    """Singular values at or below this are rounding noise of the float32 Gram matrix (eigenvalues good to ~1e-7 of
    the largest, so singular values to ~3e-4): their vectors are arbitrary, and dividing by them overflowed to NaN."""
    return float(S[0]) * 1e-3 + 1e-300


def _out(t: torch.Tensor, is_numpy: bool, orig: Any):
    if is_numpy:
        return t.cpu().numpy()
    return t.to(orig) if orig is not None else t


def _hals_sweeps(Wt: torch.Tensor, num: torch.Tensor, gram: torch.Tensor, sweeps: int, tol_inner: float) -> None:
    """In place: exact coordinate descent on the rows of ``Wt`` for min ||X - Wt^T H||, ``Wt`` [r, N].

    ``num`` = H X^T [r, N], ``gram`` = H H^T [r, r]. Stops early when a sweep changes Wt by less than
    ``tol_inner`` times the first sweep's change (Gillis & Glineur's inner stopping rule).
    """
    r = Wt.shape[0]
    diag = torch.diagonal(gram).clamp_min(torch.finfo(gram.dtype).tiny)
    first = None
    # the early-stopping test costs about one sweep, so it is only worth it when many sweeps are allowed
    old = torch.empty_like(Wt) if (tol_inner > 0 and sweeps > 3) else None
    for _ in range(sweeps):
        if old is not None:
            old.copy_(Wt)
        for j in range(r):
            # [r] @ [r, N] -> [N]: row j's gradient; exact minimisation over row j, then projection on >= 0
            step = torch.addmv(num[j], Wt.T, gram[j], alpha=-1.0)
            Wt[j].add_(step, alpha=1.0 / float(diag[j])).clamp_(min=0.0)
        if old is not None:
            delta = float(torch.dist(Wt, old)) ** 2
            if first is None:
                first = delta
            elif delta <= tol_inner * first:
                break


def _residual_norm(X: torch.Tensor, Wt: torch.Tensor, H: torch.Tensor, rows: int = 1 << 16) -> float:
    """``||X - Wt^T H||_F`` from the residual itself (one pass over X), accurate where the identity used while
    iterating loses digits: that subtracts terms up to (||X|| / error)^2 times the squared error, in float32 products."""
    total = 0.0
    for i in range(0, X.shape[0], rows):
        R = torch.addmm(X[i:i + rows], Wt[:, i:i + rows].T, H, alpha=-1.0)   # [n, K] - [n, r] @ [r, K]
        total += float(torch.sum(R * R, dtype=torch.float64))
    return math.sqrt(total)


def _nnls_rows(X: torch.Tensor, H: torch.Tensor, sweeps: int, tol_inner: float) -> torch.Tensor:
    """``Wt`` [r, M] >= 0 minimising ``||X - Wt^T H||`` for fixed ``H``: clipped least squares, then HALS sweeps."""
    num = (X @ H.T).T.contiguous()                                      # [r, M]
    gram = H @ H.T                                                      # [r, r]
    reg = 1e-6 * torch.trace(gram) / gram.shape[0] + torch.finfo(gram.dtype).tiny
    eye = torch.eye(gram.shape[0], dtype=torch.float64, device=gram.device)
    Wt = torch.linalg.solve(gram.double() + reg.double() * eye, num.double()).to(X.dtype).clamp_min(0).contiguous()
    _hals_sweeps(Wt, num, gram, sweeps, tol_inner)
    return Wt


class NMF:
    """Non-negative matrix factorisation ``X [N, K] ~= W [N, r] @ H [r, K]`` by accelerated HALS, in torch.

    Parameters
    ----------
    n_components : int, default 8
        Rank ``r``.
    max_iter : int, default 200
        Maximum number of outer iterations (one update of ``W`` and one of ``H`` each). A ``ConvergenceWarning`` is
        issued when it is reached before ``tol``.
    tol : float, default 1e-4
        Stop when the last 3 accepted iterations lowered the Frobenius error ``||X - WH||`` by less than ``tol`` times
        the current error each, on average.
    init : {"nndsvda", "nndsvd", "nndsvdar", "random"}, default "nndsvda"
        Initialisation (as scikit-learn's). ``nndsvd*`` need ``n_components <= min(N, K)``.
    seed : int or None, default 0
        Seed for the random parts (``"random"``, ``"nndsvdar"``). On CPU the result is deterministic for a seed.
    device : str or torch.device, optional
        Where to compute; default: the input tensor's device (CPU for numpy input). Outputs return to the input's kind:
        numpy in -> numpy out, tensor in -> tensor (on its device) out.
    inner_iter : int or None, default None
        Coordinate sweeps per factor per outer iteration; default: ``1 + K // (2 r)`` for ``W`` and ``1 + N // (2 r)``
        for ``H`` (capped at 10; the expensive products are reused), stopping early when a sweep changes little.
    extrapolate : bool, default True
        Extrapolated HALS (Ang & Gillis 2019): usually 2-3x fewer iterations; the accepted error still never rises.
    init_subsample : "auto", float in (0, 1] or None, default "auto"
        First fit on this fraction of the rows (drawn with ``seed``), then start the fit on all rows from its
        components: most iterations then cost a fraction, and the full fit only refines. ``"auto"``: 1/8 of the rows
        when that is at least 8192 rows and 32 per column (tall matrices such as LayerNMF's), else off. None: off.
    verbose : bool, default False

    Attributes
    ----------
    components_ : H, [n_components, K], same kind (numpy/tensor) as the fitted ``X``.
    reconstruction_err_ : float
        Frobenius norm ``||X - WH||`` at the end of ``fit`` (scikit-learn's definition), computed from the residual.
    n_iter_ : int
        Outer iterations on all rows (including extrapolated steps that were rejected).
    n_iter_subsample_ : int
        Outer iterations of the pre-fit on the row subsample (0 without one).
    loss_history_ : list of float
        ``||X - WH||`` after each accepted iteration (non-increasing), from the cross products (float32 products:
        good to about 1e-7 (||X|| / error)^2 relative).
    """

    _max_inner = 10  # cap on coordinate sweeps per factor update

    def __init__(self, n_components: int = 8, *, max_iter: int = 200, tol: float = 1e-4, init: str = "nndsvda",
                 seed: int | None = 0, device: Any = None, inner_iter: int | None = None, extrapolate: bool = True,
                 init_subsample: str | float | None = "auto", verbose: bool = False):
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.init = init
        self.seed = seed
        self.device = device
        self.inner_iter = inner_iter
        self.extrapolate = extrapolate
        self.init_subsample = init_subsample
        self.verbose = verbose
        self.components_ = None
        self.reconstruction_err_ = None
        self.n_iter_ = None
        self.n_iter_subsample_ = 0
        self.loss_history_: list[float] = []

    # ------------------------------------------------------------------ checks
    def _validate(self) -> None:
        check_scalar("n_components", self.n_components, int, low=1)
        check_scalar("max_iter", self.max_iter, int, low=1)
        check_scalar("tol", self.tol, (int, float), low=0)
        check_choice("init", self.init, _INITS)
        if self.inner_iter is not None:
            check_scalar("inner_iter", self.inner_iter, int, low=1)
        if not (self.init_subsample is None or self.init_subsample == "auto"):
            check_scalar("init_subsample", self.init_subsample, (int, float), low=0, high=1, low_inclusive=False)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer))):
            raise TypeError(error_message("seed", "an int or None", self.seed))

    def _device(self, X: Any) -> torch.device | None:
        if self.device is not None:
            return resolve_device(self.device)
        return None

    # ------------------------------------------------------------------ init
    def _initialize(self, X: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        N, K = X.shape
        r = self.n_components
        dtype, dev = X.dtype, X.device
        mean = float(X.mean())
        if self.init == "random" or mean == 0.0:
            avg = math.sqrt(max(mean, 0.0) / r) or 1e-3
            H = avg * torch.randn(r, K, generator=gen, device=dev, dtype=dtype).abs()
            Wt = avg * torch.randn(r, N, generator=gen, device=dev, dtype=dtype).abs()
            return Wt, H
        if r > min(N, K):
            raise ValueError(error_message("n_components", f"at most min(n_samples, n_features) = {min(N, K)} with "
                                           f"init={self.init!r}", r, "use init='random' for a larger rank"))
        # Top-r singular triplets from the eigen-decomposition of the smaller Gram matrix (float64 for the eigh).
        if K <= N:
            G = (X.T @ X).double()                                     # [K, K]
            evals, evecs = torch.linalg.eigh(G)
            order = torch.argsort(evals, descending=True)[:r]
            S = evals[order].clamp_min(0).sqrt()                       # [r]
            floor = _rank_floor(S)
            V = evecs[:, order].T                                      # [r, K]
            U = (X @ V.T.to(X.dtype)).double() / S.clamp_min(floor)    # [N, K] @ [K, r] -> [N, r]
        else:
            G = (X @ X.T).double()                                     # [N, N]
            evals, evecs = torch.linalg.eigh(G)
            order = torch.argsort(evals, descending=True)[:r]
            S = evals[order].clamp_min(0).sqrt()
            floor = _rank_floor(S)
            U = evecs[:, order]                                        # [N, r]
            V = (U.T.to(X.dtype) @ X).double() / S.clamp_min(floor)[:, None]  # [r, N] @ [N, K] -> [r, K]
        W = torch.zeros(N, r, dtype=torch.float64, device=dev)
        H = torch.zeros(r, K, dtype=torch.float64, device=dev)
        W[:, 0] = S[0].sqrt() * U[:, 0].abs()
        H[0] = S[0].sqrt() * V[0].abs()
        for j in range(1, r):
            if S[j] <= floor:   # beyond X's numerical rank (e.g. dead channels): left zero (nndsvda fills in)
                continue
            x, y = U[:, j], V[j]
            xp, yp, xn, yn = x.clamp_min(0), y.clamp_min(0), (-x).clamp_min(0), (-y).clamp_min(0)
            xpn, ypn, xnn, ynn = xp.norm(), yp.norm(), xn.norm(), yn.norm()
            mp, mn = xpn * ypn, xnn * ynn
            if mp > mn:
                u, v, sigma = xp / xpn, yp / ypn, mp
            else:
                u, v, sigma = xn / xnn.clamp_min(1e-300), yn / ynn.clamp_min(1e-300), mn
            lbd = (S[j] * sigma).sqrt()
            W[:, j] = lbd * u
            H[j] = lbd * v
        W[W < _EPS] = 0
        H[H < _EPS] = 0
        W, H = W.to(dtype), H.to(dtype)
        if self.init == "nndsvda":
            W[W == 0] = mean
            H[H == 0] = mean
        elif self.init == "nndsvdar":
            W = torch.where(W == 0, mean / 100 * torch.rand(W.shape, generator=gen, device=dev, dtype=dtype), W)
            H = torch.where(H == 0, mean / 100 * torch.rand(H.shape, generator=gen, device=dev, dtype=dtype), H)
        return W.T.contiguous(), H.contiguous()

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any = None) -> "NMF":
        """Learn ``H`` (``components_``) from ``X`` [N, K] (non-negative). Returns ``self``."""
        self.fit_transform(X)
        return self

    def fit_transform(self, X: Any, y: Any = None):
        """Learn the factorisation of ``X`` [N, K] and return ``W`` [N, n_components] (numpy in -> numpy out)."""
        self._validate()
        Xt, is_numpy, orig = _as_matrix("X", X, self._device(X))
        Wt, H = self._fit(Xt)
        self._components = H
        self.components_ = _out(H, is_numpy, orig)
        return _out(Wt.T.contiguous(), is_numpy, orig)

    def _chunks(self, X: torch.Tensor) -> list[slice]:
        """Row blocks of about ``chunk_bytes`` so that a block of X and its W rows stay in cache (CPU); one block on GPU."""
        N, K = X.shape
        if X.device.type != "cpu" or N * self.n_components * X.element_size() <= self._chunk_bytes * 2:
            return [slice(0, N)]                                        # W fits in cache (or GPU): one block
        rows = max(16384, int(self._chunk_bytes // (K * X.element_size())))
        return [slice(i, min(i + rows, N)) for i in range(0, N, rows)]

    _chunk_bytes = 4 << 20  # CPU blocks of X of about this size when W is too large for the cache

    def _subsample_rows(self, N: int, K: int) -> int:
        """Rows of the pre-fit subsample (0: no pre-fit)."""
        frac = self.init_subsample
        if frac is None:
            return 0
        if frac == "auto":
            n = N // 8
            return n if n >= max(_SUBSAMPLE_MIN_ROWS, 32 * K) else 0
        n = int(round(frac * N))
        return n if n >= self.n_components else 0

    def _fit(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        N, K = X.shape
        gen = torch_generator(self.seed, X.device)
        n_sub = self._subsample_rows(N, K)
        self.n_iter_subsample_ = 0
        if 0 < n_sub < N:
            # Pre-fit on random rows: H (r x K) is fixed by the rows' statistics, which a subsample carries, at a
            # fraction of the cost per iteration; the full fit then starts near its optimum and only refines.
            rows = torch.randperm(N, generator=gen, device=X.device)[:n_sub].sort().values
            Xs = X[rows].contiguous()
            Wt_s, H = self._initialize(Xs, gen)
            _, H, self.n_iter_subsample_, _, _ = self._iterate(Xs, Wt_s, H)
            Wt = _nnls_rows(X, H, int(min(self._max_inner, 1 + K // (4 * self.n_components))), 0.01)
        else:
            Wt, H = self._initialize(X, gen)                            # [r, N], [r, K]
        Wt, H, self.n_iter_, history, converged = self._iterate(X, Wt, H, verbose=self.verbose)
        self.loss_history_ = history
        self.reconstruction_err_ = _residual_norm(X, Wt, H)
        if not converged:
            warnings.warn(f"NMF: maximum number of iterations max_iter={self.max_iter} reached before the error "
                          f"improvement fell below tol={self.tol}; increase max_iter or tol", ConvergenceWarning,
                          stacklevel=3)
        return Wt, H

    def _iterate(self, X: torch.Tensor, Wt: torch.Tensor, H: torch.Tensor, verbose: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor, int, list[float], bool]:
        """Accelerated HALS from ``(Wt, H)`` until ``tol`` or ``max_iter``.

        Returns ``(Wt, H, iterations, errors of the accepted iterates, converged)``.
        """
        N, K = X.shape
        r = self.n_components
        chunks = self._chunks(X)
        # W is stored as contiguous [r, n] blocks: its rows are independent given H, so the W step for one block of X
        # is finished (and W_b^T X_b, W_b^T W_b accumulated) while that block is in cache: one pass over X per iteration.
        Wb = [Wt[:, c].contiguous() for c in chunks]
        del Wt
        # sweeps per update: a sweep costs ~size(factor) * r, the product it reuses ~N * K * r
        inner_w = self.inner_iter or int(min(self._max_inner, 1 + K // (4 * r)))
        inner_h = self.inner_iter or int(min(self._max_inner, 1 + N // (4 * r)))
        norm_x2 = _squared_norm(X)
        history: list[float] = []
        prev = math.inf
        converged = False
        # Extrapolation (Ang & Gillis 2019, "Accelerating NMF algorithms using extrapolation"): each factor update
        # starts from the accepted iterate but the other factor is pushed along its last step by beta; beta grows
        # while the error falls and shrinks (with a restart from the accepted pair) when it rises, so the recorded
        # error of the accepted iterates never rises.
        beta = 0.5 if self.extrapolate else 0.0
        beta_max, grow, grow_max, shrink = 1.0, 1.05, 1.01, 1.5
        Hy = H.clone()                                                  # H used for the next W step
        it = 0
        for it in range(1, self.max_iter + 1):
            HHt = Hy @ Hy.T                                             # [r, r]
            WX = torch.zeros(r, K, dtype=torch.float64, device=X.device)
            WtW = torch.zeros(r, r, dtype=torch.float64, device=X.device)
            new_blocks = []
            for c, W_c in zip(chunks, Wb):
                X_c = X[c]                                              # [n, K]
                if K <= 64:   # narrow X: the transposed product avoids a transposing copy of [n, r]
                    num = Hy @ X_c.T                                    # [r, K] @ [K, n] -> [r, n]
                else:
                    num = (X_c @ Hy.T).T.contiguous()                   # [n, K] @ [K, r] -> [n, r] -> [r, n]
                W_n = W_c.clone()
                _hals_sweeps(W_n, num, HHt, inner_w, 0.01)
                if beta > 0:                                            # W_y = max(0, W_n + beta (W_n - W))
                    W_n = torch.lerp(W_c, W_n, 1.0 + beta).clamp_min_(0.0)
                new_blocks.append(W_n)
                wx, wtw = _cross_products(W_n, X_c)
                WX += wx
                WtW += wtw
            H_n = H.clone()
            _hals_sweeps(H_n, WX.to(X.dtype), WtW.to(X.dtype), inner_h, 0.01)
            # ||X - WH||^2 = ||X||^2 - 2 <H, W^T X> + <W^T W, H H^T>  (exact for the candidate W, H)
            Hd = H_n.double()
            err2 = norm_x2 - 2.0 * float(torch.sum(Hd * WX)) + float(torch.sum(WtW * (Hd @ Hd.T)))
            err = math.sqrt(max(err2, 0.0))
            if verbose:
                print(f"NMF iteration {it}: error {err:.6g} (beta {beta:.3g})")
            if err > prev:                                              # reject: restart from the accepted pair
                if beta == 0.0:   # a plain HALS step cannot raise the error: this is rounding at convergence
                    converged = True
                    break
                beta_max, beta = beta, beta / shrink
                Hy = H
                if beta < 1e-3:                                         # plain HALS from now on
                    beta = 0.0
                continue
            Hy = torch.lerp(H, H_n, 1.0 + beta).clamp_min_(0.0) if beta > 0 else H_n
            Wb, H = new_blocks, H_n
            history.append(err)
            if beta > 0:
                beta, beta_max = min(beta_max, beta * grow), min(1.0, beta_max * grow_max)
            # judged over the last _TOL_WINDOW accepted iterations: single extrapolated steps can stall just before
            # a restart and then improve again (a one-step rule stopped there, up to 0.05% above the optimum)
            w = _TOL_WINDOW
            if len(history) > w and history[-1 - w] - err < w * self.tol * max(err, 1e-30):
                converged = True
                break
            prev = err
        return torch.cat(Wb, dim=1), H, it, history, converged

    # ------------------------------------------------------------------ transform
    def transform(self, X: Any):
        """``W`` for new data ``X`` [M, K] with ``H`` fixed (non-negative least squares by HALS)."""
        check_is_fitted(self, "components_")
        Xt, is_numpy, orig = _as_matrix("X", X, self._device(X))
        H = self._components.to(device=Xt.device, dtype=Xt.dtype)
        if Xt.shape[1] != H.shape[1]:
            raise ValueError(error_message("X", f"{H.shape[1]} features (columns), as in fit", Xt))
        Wt = _nnls_rows(Xt, H, max(self.max_iter, 1), self.tol)
        return _out(Wt.T.contiguous(), is_numpy, orig)

    def inverse_transform(self, W: Any):
        """``W @ H`` [M, K]."""
        check_is_fitted(self, "components_")
        if isinstance(W, torch.Tensor):
            return W @ self._components.to(device=W.device, dtype=W.dtype)
        W = np.asarray(W)
        return W @ self._components.cpu().numpy().astype(W.dtype, copy=False)

    # ------------------------------------------------------------------ persistence
    _PARAMS = ("n_components", "max_iter", "tol", "init", "seed", "inner_iter", "extrapolate", "init_subsample",
               "verbose")

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The fitted NMF as tensors (``components``) and JSON (parameters and fit statistics), for :meth:`save` or
        a caller's own save (e.g. :meth:`xrl.vision.LayerNMF.save`); the inverse is :meth:`from_state`."""
        check_is_fitted(self, "components_")
        config = {"class": "xrl.nmf.NMF", "params": {k: getattr(self, k) for k in self._PARAMS},
                  "device": None if self.device is None else str(self.device),
                  "components_kind": "numpy" if isinstance(self.components_, np.ndarray) else "tensor",
                  "reconstruction_err_": self.reconstruction_err_, "n_iter_": self.n_iter_,
                  "n_iter_subsample_": self.n_iter_subsample_, "loss_history_": list(self.loss_history_)}
        return {"components": self._components.detach().cpu()}, config

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], config: dict[str, Any], what: str = "NMF") -> "NMF":
        """Rebuild a fitted NMF from :meth:`state`'s output (ValueError naming ``what`` when it is incomplete)."""
        params = config.get("params") if isinstance(config, dict) else None
        if config.get("class") != "xrl.nmf.NMF" or not isinstance(params, dict) or "components" not in tensors:
            raise ValueError(f"{what}: not a saved xrl NMF (expected class 'xrl.nmf.NMF', 'params' and the "
                             "'components' tensor); re-save it with NMF.save")
        nmf = cls(**{k: params[k] for k in cls._PARAMS if k in params}, device=config.get("device"))
        nmf._validate()
        H = tensors["components"]
        nmf._components = H
        nmf.components_ = H.numpy() if config.get("components_kind", "numpy") == "numpy" else H
        nmf.reconstruction_err_ = config.get("reconstruction_err_")
        nmf.n_iter_ = config.get("n_iter_")
        nmf.n_iter_subsample_ = config.get("n_iter_subsample_", 0)
        nmf.loss_history_ = list(config.get("loss_history_", []))
        return nmf

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted NMF to the directory ``path`` (``nmf.safetensors`` + ``nmf.json``) as one transaction
        (:func:`xrl.io.atomic_directory`); :meth:`load` reads it back. Tensor components come back on the CPU."""
        from xrl import io

        tensors, config = self.state()
        path = Path(path)
        with io.atomic_directory(path) as tmp:
            io.save_tensors(tmp / "nmf.safetensors", tensors)
            io.save_json(tmp / "nmf.json", config)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "NMF":
        """Read an NMF written by :meth:`save` (manifest checked, nothing unpickled); ``transform`` works at once."""
        from xrl import io

        path = Path(path)
        io.verify_directory(path)
        return cls.from_state(io.load_tensors(path / "nmf.safetensors"), io.load_json(path / "nmf.json"), str(path))

    def __repr__(self) -> str:
        return (f"NMF(n_components={self.n_components}, max_iter={self.max_iter}, tol={self.tol}, init={self.init!r}, "
                f"seed={self.seed}, device={self.device!r})")
