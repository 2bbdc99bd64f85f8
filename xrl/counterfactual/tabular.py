"""CFRL for mixed numerical/categorical data: ``CounterfactualRLTabular`` (alibi's API, built on the core loop).

Same paper as :mod:`xrl.counterfactual.cfrl` (Samoilescu et al. 2021, section on heterogeneous data). On top of the
core loop this variant

* uses a heterogeneous autoencoder (:class:`xrl.models.tabular.HeAE`): numerical head + one logits head per
  categorical feature;
* sparsity = L1 on the standardised numerical features + L0 on the categorical ones (straight-through one-hot);
* trains with random conditions (numerical ``[c_low, c_high]`` bounds and categorical masks,
  :class:`~xrl.counterfactual.conditioning.TabularConstraints`) so that at explain time the user can restrict
  changes with dicts in the original units: ``C={"Age": [0, 20], "Workclass": ["State-gov", "Private"]}``;
* decodes counterfactuals through a projection that satisfies immutable features, ranges and conditions *exactly*
  (integers are rounded before clipping, so alibi #549's "46.6 -> 46" cannot break an "increase only" range);
* supports regression black boxes: ``Y_t`` is a target interval ``[low, high]`` and the reward is 1 inside it.

How the core loop is reused without changing it: the rows this explainer hands to the core's loop are
``[model-space row | exact original codes]`` (float64), so every hook (conditioning, post-processing, inverse
pre-processing, sparsity) sees the exact original values of the rows it works on; the encoder only ever sees the
model-space part.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import io
from .._validation import check_scalar, error_message
from ..models import tabular as _tabular_models  # noqa: F401  (registers TabularEncoder/Decoder for load)
from ..preprocessing import TabularPreprocessor, normalize_category_map
from .cfrl import CounterfactualRL, _EvalMode, _to_numpy, _sample_mean, _to_tensor, get_classification_reward
from .conditioning import TabularConstraints
from .explanation import Explanation

__all__ = ["CounterfactualRLTabular", "DEFAULT_RETRIES", "interval_reward"]

_PREDICT_CHUNK = 10_000  # rows per black-box call at explain time (one call per chunk, not per actor batch)
DEFAULT_RETRIES = 16  # explain(retries=None); Adult: validity 0.979 -> 0.992, 12.5k -> 8.5-9.1k rows/s (docs/tabular.md)


def interval_reward(Y_pred: torch.Tensor, Y_target: torch.Tensor) -> torch.Tensor:
    """Regression reward: 1 where ``low <= y_pred <= high`` for targets ``[N, 2]`` (low, high)."""
    y = Y_pred.reshape(-1)
    return ((y >= Y_target[:, 0]) & (y <= Y_target[:, 1])).float()


def _resolve_preprocessor(encoder_preprocessor: Any, decoder_inv_preprocessor: Any) -> TabularPreprocessor:
    pre = encoder_preprocessor
    if not isinstance(pre, TabularPreprocessor):
        pre = getattr(encoder_preprocessor, "__self__", None)
    if not isinstance(pre, TabularPreprocessor):
        raise TypeError(error_message(
            "encoder_preprocessor", "a fitted xrl.preprocessing.TabularPreprocessor (or its .transform)",
            type(encoder_preprocessor).__name__,
            "build it with TabularPreprocessor(feature_names, category_map).fit(X_train): the explainer needs its "
            "statistics and exact inverse to enforce constraints (arbitrary callables cannot guarantee them)"))
    if getattr(pre, "mean_", None) is None:
        raise RuntimeError("encoder_preprocessor: the TabularPreprocessor is not fitted yet: call fit(X_train) first")
    inv = decoder_inv_preprocessor
    if inv is not None and inv is not pre and getattr(inv, "__self__", None) is not pre:
        raise ValueError(error_message(
            "decoder_inv_preprocessor", "None or the same TabularPreprocessor's inverse_transform",
            type(inv).__name__, "a different inverse would decode counterfactuals inconsistently with the encoder"))
    return pre


class CounterfactualRLTabular(CounterfactualRL):
    """Counterfactuals with RL for tabular data with immutable features, ranges and explain-time conditions.

    Parameters
    ----------
    predictor
        Black box on the *original* format (what ``encoder_preprocessor`` was fitted on: numeric or object array,
        or DataFrame) returning class scores ``[N, K]``, or ``[N]``/``[N, 1]`` values (regression).
    encoder, decoder
        A trained heterogeneous autoencoder's halves (:class:`~xrl.models.tabular.HeAE`); the decoder returns the
        list of heads ``[numerical (if any), categorical logits...]`` in the preprocessor's ``head_dims``.
    latent_dim
        The encoder's output size.
    encoder_preprocessor
        The fitted :class:`~xrl.preprocessing.TabularPreprocessor` (or its ``transform``).
    decoder_inv_preprocessor
        ``None`` or the same preprocessor's ``inverse_transform`` (alibi passes a pair of functions; here they must
        come from the same fitted object).
    coeff_sparsity, coeff_consistency
        Loss weights (alibi's Adult example: 0.5 and 0.5).
    feature_names, category_map
        Optional; when given they must match the preprocessor's (``category_map`` keys by index or name).
    immutable_features
        Features that never change.
    ranges
        ``{numerical feature: [low, high]}``, ``-1 <= low <= 0 <= high <= 1``: the allowed change as a fraction of the
        feature's training range (``{"Age": [0, 1]}``: may only increase). Cannot name an immutable feature.
    weight_num, weight_cat
        Weights of the numerical (L1) and categorical (L0) sparsity terms.
    backend, seed
        As in :class:`CounterfactualRL`.
    conditional
        Train with random conditions (default True) so explain-time conditions and ``diversity`` work. With False,
        the actor sees no condition and only immutables/ranges are enforced.
    **kwargs
        Keys of :data:`~xrl.counterfactual.DEFAULT_BASE_PARAMS` (``train_steps``, ``batch_size``, ...).
        ``postprocessing_funcs`` and ``conditional_func`` are managed by this class and cannot be passed.

    Examples
    --------
    >>> pre = TabularPreprocessor(adult.feature_names, adult.category_map).fit(X_train)       # doctest: +SKIP
    >>> ae = HeAE(TabularEncoder(pre.model_dim, 128, 15), TabularDecoder(15, 128, pre.head_dims))  # doctest: +SKIP
    >>> train_heae(ae, pre.transform(X_train), pre.n_num, pre.cat_sizes_)                      # doctest: +SKIP
    >>> cf = CounterfactualRLTabular(predictor, ae.encoder, ae.decoder, 15, pre, None, 0.5, 0.5,
    ...                              immutable_features=["Sex"], ranges={"Age": [0, 1]},
    ...                              train_steps=10_000).fit(X_train)                            # doctest: +SKIP
    >>> exp = cf.explain(X_test[:100], Y_t=np.array([1]), C={"Age": [0, 20]})                    # doctest: +SKIP
    """

    name = "CounterfactualRLTabular"

    def __init__(self, predictor: Callable, encoder: nn.Module, decoder: nn.Module, latent_dim: int,
                 encoder_preprocessor: Any, decoder_inv_preprocessor: Any, coeff_sparsity: float,
                 coeff_consistency: float, feature_names: Sequence[str] | None = None,
                 category_map: Mapping | None = None, immutable_features: Sequence[str] | None = None,
                 ranges: Mapping[str, Sequence[float]] | None = None, weight_num: float = 1.0,
                 weight_cat: float = 1.0, backend: str = "pytorch", seed: int = 0, *, conditional: bool = True,
                 **kwargs: Any) -> None:
        for key in ("postprocessing_funcs", "conditional_func", "encoder_preprocessor", "decoder_inv_preprocessor"):
            if key in kwargs:
                raise ValueError(error_message(key, "not to be passed to CounterfactualRLTabular", "a value",
                                               "the explainer builds its own constraint-safe post-processing and "
                                               "conditioning from immutable_features, ranges and C"))
        pre = _resolve_preprocessor(encoder_preprocessor, decoder_inv_preprocessor)
        if feature_names is not None and list(feature_names) != pre.feature_names_:
            raise ValueError(error_message("feature_names", f"the preprocessor's feature names {pre.feature_names_}",
                                           list(feature_names)))
        if category_map is not None:
            cmap = normalize_category_map(category_map, pre.feature_names_)
            if cmap != pre.category_map_:
                diff = [pre.feature_names_[j] for j in sorted(set(cmap) | set(pre.category_map_))
                        if cmap.get(j) != pre.category_map_.get(j)]
                raise ValueError(error_message("category_map", "the preprocessor's category map", category_map,
                                               f"they differ for {diff}"))
        check_scalar("weight_num", weight_num, low=0)
        check_scalar("weight_cat", weight_cat, low=0)
        if not isinstance(conditional, bool):
            raise TypeError(error_message("conditional", "a bool", conditional))
        self.preprocessor = pre
        self.constraints = TabularConstraints(pre, immutable_features, ranges)
        self.weight_num, self.weight_cat = float(weight_num), float(weight_cat)
        self.conditional = conditional
        self._user_reward = kwargs.get("reward_func") is not None and kwargs.get("reward_func") is not \
            get_classification_reward
        super().__init__(predictor, encoder, decoder, coeff_sparsity, coeff_consistency, latent_dim=latent_dim,
                         backend=backend, seed=seed, **kwargs)
        self._D = pre.model_dim
        self._F = len(pre.feature_names_)
        self._train_codes: torch.Tensor | None = None
        self.meta["params"].update(self._tabular_params())

    def _tabular_params(self) -> dict[str, Any]:
        return {"immutable_features": list(self.constraints.immutable_features),
                "ranges": dict(self.constraints.ranges), "weight_num": self.weight_num,
                "weight_cat": self.weight_cat, "conditional": self.conditional,
                "feature_names": list(self.preprocessor.feature_names_),
                "category_map": {int(k): v for k, v in self.preprocessor.category_map_.items()}}

    # ------------------------------------------------------------------------------------------------- row layout
    def _split(self, X_aug: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, D + F]`` rows handed to the core loop -> (model space float32 ``[B, D]``, codes float64 ``[B, F]``)."""
        return X_aug[:, :self._D].float(), X_aug[:, self._D:]

    def _augment(self, A: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.preprocessor.codes_to_model(A, torch.float64), A], 1)  # [B, D + F]

    # ------------------------------------------------------------------------------------------------- hooks
    def _predict(self, X: Any, what: str = "predictor") -> torch.Tensor:
        if isinstance(X, torch.Tensor) and X.ndim == 2 and X.shape[1] == self._D + self._F \
                and X.dtype == torch.float64:
            X = self.preprocessor.from_codes(X[:, self._D:])  # the original format of these rows
        if isinstance(X, pd.DataFrame) and not isinstance(self.params["predictor"], nn.Module):
            Y = self.params["predictor"](X)
            n = len(X)
            if isinstance(Y, (pd.DataFrame, pd.Series)):
                Y = Y.to_numpy()
            Y = np.asarray(Y) if not isinstance(Y, torch.Tensor) else Y
            if len(Y.shape) == 0 or Y.shape[0] != n:
                raise ValueError(f"{what}: returned {Y.shape[0] if len(Y.shape) else 'a scalar'} row(s) for {n} "
                                 "input rows; the predictor must return one prediction per row")
            Y = _to_tensor(Y, self.device).float()
            Y = Y[:, None] if Y.ndim == 1 else Y
            if Y.ndim != 2 or not torch.isfinite(Y).all():
                raise ValueError(f"{what}: expected finite predictions shaped [N, classes] or [N], got "
                                 f"{tuple(Y.shape)}")
            return Y
        return super()._predict(X, what)

    def _prepare(self, X: np.ndarray) -> dict[str, Any]:
        p, pre = self.params, self.preprocessor
        A = self._train_codes
        assert A is not None and len(A) == len(X)
        chunk = max(p["batch_size"], _PREDICT_CHUNK)
        Y = torch.cat([self._predict(pre.from_codes(A[i:i + chunk])) for i in range(0, len(A), chunk)])
        X_model = pre.codes_to_model(A)  # [N, D] float32
        Z = torch.cat([self._encode(X_model[i:i + chunk]) for i in range(0, len(A), chunk)])
        if Z.ndim != 2 or Z.shape[1] != p["latent_dim"]:
            raise ValueError(f"latent_dim: expected the encoder's output size {tuple(Z.shape[1:])}, got "
                             f"{p['latent_dim']}")
        heads = self._decode(Z[:2])
        if not isinstance(heads, (list, tuple)) or [h.shape[1] for h in heads] != pre.head_dims:
            got = [tuple(h.shape) for h in heads] if isinstance(heads, (list, tuple)) else tuple(heads.shape)
            raise ValueError(error_message("decoder", f"a list of heads of widths {pre.head_dims} (numerical first, "
                                           "then one per categorical feature)", got,
                                           "build it with TabularDecoder(latent_dim, hidden, pre.head_dims)"))
        return {"X_model": self._augment(A), "Y_m": Y, "Z": Z}

    def _materialize(self, state_dim: int) -> None:
        # regression targets are intervals [low, high]: one more column than the core's scalar target
        super()._materialize(state_dim + (1 if self.regression else 0))

    def _condition(self, X_aug: torch.Tensor) -> torch.Tensor | None:
        if not self.conditional:
            return None
        _, A = self._split(X_aug)
        fs = self._fit_state
        gen = fs["gen"] if fs is not None and "gen" in fs else torch.Generator(A.device).manual_seed(self.seed)
        return self.constraints.random_condition(A, gen)

    def _full_condition(self, A: torch.Tensor, C: torch.Tensor | None) -> torch.Tensor:
        return self.constraints.default_condition(A) if C is None else C

    def _project(self, heads: Any, X_aug: torch.Tensor, C: torch.Tensor | None) -> torch.Tensor:
        _, A = self._split(X_aug)
        A_cf = self.constraints.project(heads, A, self._full_condition(A, C))
        return self._augment(A_cf)

    def _apply_postprocessing(self, X_hat: Any, X: torch.Tensor, C: torch.Tensor | None) -> Any:
        return self._project(X_hat, X, C)

    def _inverse(self, X_cf: Any) -> Any:
        return X_cf  # _predict maps augmented rows to the original format

    def _encode(self, X: Any) -> torch.Tensor:
        if isinstance(X, torch.Tensor) and X.ndim == 2 and X.shape[1] == self._D + self._F:
            X = X[:, :self._D]
        return super()._encode(X.float() if isinstance(X, torch.Tensor) else X)

    def _sparsity_loss(self, X_hat_cf: Any, X: torch.Tensor, weight: torch.Tensor | None = None
                       ) -> dict[str, torch.Tensor]:
        """L1 on standardised numerical features + L0 on categorical ones (straight-through one-hot), each mean;
        ``weight`` [B]: per-sample weights (``sparsity_gate``)."""
        X_model, _ = self._split(X)
        pre = self.preprocessor
        heads = list(X_hat_cf)
        out = {}
        h = 0
        if pre.n_num:
            out["sparsity_num_loss"] = self.weight_num * _sample_mean((heads[0] - X_model[:, :pre.n_num]).abs(), weight)
            h = 1
        if pre.cat_sizes_:
            # all categorical heads at once in a padded [B, n_cat, Kmax] layout (pads: -inf logits, 0 targets)
            logits = pre.pad_categorical(torch.cat(heads[h:], 1), float("-inf"))
            target = pre.pad_categorical(X_model[:, pre.n_num:], 0.0)
            prob = logits.softmax(-1)
            hard = F.one_hot(prob.argmax(-1), prob.shape[-1]).to(prob.dtype)
            st = hard + prob - prob.detach()  # forward: one-hot, backward: softmax (straight-through)
            changed = 0.5 * (st - target).abs().sum(-1)  # [B, n_cat]: 1 per changed feature
            out["sparsity_cat_loss"] = self.weight_cat * _sample_mean(changed, weight)
        return out

    def _sample_targets(self, Y_m: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if not self.regression:
            return super()._sample_targets(Y_m, gen)
        lo, hi = self.y_range
        n = len(Y_m)
        span = hi - lo
        center = lo + span * torch.rand(n, 1, device=self.device, generator=gen)
        half = span * (0.025 + 0.125 * torch.rand(n, 1, device=self.device, generator=gen))
        return torch.cat([center - half, center + half], 1)  # [n, 2] target intervals

    def _reward(self, Y_pred: torch.Tensor, Y_t: torch.Tensor) -> torch.Tensor:
        if self.regression and not self._user_reward:
            return interval_reward(Y_pred, Y_t)
        return super()._reward(Y_pred, Y_t)

    # ------------------------------------------------------------------------------------------------- fit
    def fit(self, X: Any) -> "CounterfactualRLTabular":
        """Train on ``X`` in the original format (the one the preprocessor was fitted on)."""
        A = self.preprocessor.to_codes(X, "X")
        self._train_codes = torch.from_numpy(A).to(self.device)
        return super().fit(A.astype(np.float32))

    # ------------------------------------------------------------------------------------------------- explain
    def _targets(self, Y_t: Any, n: int) -> torch.Tensor:
        if not self.regression:
            return self._validate_targets(Y_t, n)
        if Y_t is None:
            raise ValueError("Y_t: expected target intervals [low, high] for a regression predictor, got None")
        T = np.asarray(_to_numpy(Y_t), dtype=np.float64)
        if T.ndim == 1 and T.shape[0] == 2:
            T = T[None]
        if T.ndim != 2 or T.shape[1] != 2 or T.shape[0] not in (1, n):
            raise ValueError(error_message("Y_t", f"target intervals [[low, high]] shaped [1, 2] or [{n}, 2] for a "
                                           "regression predictor", T))
        if not np.isfinite(T).all() or (T[:, 0] > T[:, 1]).any():
            raise ValueError(error_message("Y_t", "finite intervals with low <= high", T))
        out = torch.as_tensor(T, dtype=torch.float32, device=self.device)
        return out.expand(n, -1) if out.shape[0] == 1 else out

    def _conditions(self, C: Any, A: torch.Tensor) -> torch.Tensor | None:
        """Explain-time condition -> the actor's C (None without conditioning)."""
        empty = C is None or (isinstance(C, (list, tuple)) and len(C) == 0) or (isinstance(C, Mapping) and not C)
        if not self.conditional:
            if not empty:
                raise ValueError("C: the explainer was trained without conditioning (conditional=False), so it "
                                 "cannot follow explain-time conditions; pass C=None, or build it with "
                                 "conditional=True and fit again")
            return None
        if C is None:  # explicit beats silent: a conditional actor was trained to read a condition
            raise ValueError("C: the explainer was trained with conditioning (conditional=True), so explain needs "
                             "a condition; pass C={} for 'immutable features and ranges only', a dict such as "
                             "{'Age': [0, 20]}, one dict per row, or a condition array")
        if empty:
            return self.constraints.default_condition(A)
        if isinstance(C, Mapping) or (isinstance(C, (list, tuple)) and all(isinstance(c, Mapping) for c in C)):
            return self.constraints.condition_from_dicts(A, C)
        Ct = torch.as_tensor(np.asarray(_to_numpy(C), dtype=np.float64), device=A.device)
        if Ct.ndim == 1:
            Ct = Ct[None]
        if Ct.ndim == 2 and Ct.shape[0] == 1:
            Ct = Ct.expand(len(A), -1)
        self.constraints.check_condition(Ct, A)
        return Ct

    @torch.no_grad()
    def _generate(self, A: torch.Tensor, Y_m: torch.Tensor, T: torch.Tensor, C: torch.Tensor | None,
                  noise: torch.Tensor | None = None) -> torch.Tensor:
        """Codes of the counterfactuals of rows ``A`` (one actor forward per call), ``noise`` added in latent space."""
        p = self.params
        with _EvalMode(p["actor"]):
            Z = self._encode(self.preprocessor.codes_to_model(A))
            Z_cf = p["actor"](self._state(Z, self._labels(Y_m), T, None if C is None else C.float()))
            if noise is not None:
                Z_cf = (Z_cf + noise).clamp(p["act_low"], p["act_high"])
            heads = self._decode(Z_cf)
        return self.constraints.project(heads, A, self._full_condition(A, C))

    def _generate_batched(self, A: torch.Tensor, Y_m: torch.Tensor, T: torch.Tensor, C: torch.Tensor | None,
                          batch_size: int, noise: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`_generate` over rows in batches of ``batch_size``."""
        return torch.cat([self._generate(A[i:i + batch_size], Y_m[i:i + batch_size], T[i:i + batch_size],
                                         None if C is None else C[i:i + batch_size],
                                         None if noise is None else noise[i:i + batch_size])
                          for i in range(0, len(A), batch_size)])

    def _predict_codes(self, A: torch.Tensor) -> torch.Tensor:
        pre = self.preprocessor
        return torch.cat([self._predict(pre.from_codes(A[i:i + _PREDICT_CHUNK]))
                          for i in range(0, len(A), _PREDICT_CHUNK)])

    def explain(self, X: Any, Y_t: Any, C: Any = None, batch_size: int = 100, diversity: bool = False,
                num_samples: int = 1, patience: int = 1000, tolerance: float = 1e-3, *,
                retries: int | None = None) -> Explanation:
        """Counterfactuals for ``X`` (original format) towards ``Y_t``.

        Parameters
        ----------
        X
            Rows in the original format ``[N, F]`` (array or DataFrame).
        Y_t
            Target class per row or one for all (classification); target interval(s) ``[low, high]`` (regression).
        C
            Required when the explainer was trained with ``conditional=True`` (the default), ``None`` otherwise:
            ``{}`` (only the explainer's immutables/ranges), a dict in original units applied to all rows
            (``{"Age": [0, 20], "Workclass": ["Private"]}``), a list of 1 or N dicts, or a raw ``[N, cond_dim]``
            array. Forgetting ``C`` is an error rather than a silent default, so a conditional explainer is never
            queried without the user choosing its conditions.
        batch_size
            Rows per actor forward pass (the black box is called once per 10,000 rows).
        diversity, num_samples, patience, tolerance
            With ``diversity=True`` (one row only): draw random sub-conditions of ``C`` for ``patience`` batches at
            most, keep the counterfactuals that reach the target, drop near-duplicates (numerical values within
            ``tolerance`` standard deviations and same categories) and return up to ``num_samples``.
        retries
            For rows whose counterfactual misses the target, try this many perturbations of the actor's latent output
            (Gaussian, standard deviation ``act_noise``, seeded) and keep the valid one nearest to the actor's
            output; rows that were valid are left as they are, constraints still hold. ``None`` (default) means
            ``DEFAULT_RETRIES`` (16) for single counterfactuals; 0 returns the actor's answer only, as alibi does.
            Costs ``retries`` black-box rows per missed row, nothing for valid rows.

        Returns
        -------
        Explanation
            ``data["orig"]["X"|"class"]``, ``data["cf"]["X"|"class"]`` (original format), ``data["target"]``,
            ``data["condition"]`` and ``data["valid"]`` (bool per counterfactual).
        """
        self._check_fitted()
        check_scalar("batch_size", batch_size, int, low=1)
        pre = self.preprocessor
        A_np = pre.to_codes(X, "X")
        A = torch.from_numpy(A_np).to(self.device)
        n = len(A)
        if n == 0:
            raise ValueError(error_message("X", "at least one row", X))
        T = self._targets(Y_t, n)
        if retries is not None:
            check_scalar("retries", retries, int, low=0)
        if diversity:
            if retries:
                raise ValueError("retries: only for diversity=False (diverse mode already keeps valid samples only)")
            return self._explain_diverse(X, A, T, C, batch_size, num_samples, patience, tolerance)
        Cs = self._conditions(C, A)
        Y_m = self._predict_codes(A)
        A_cf = self._generate_batched(A, Y_m, T, Cs, batch_size)
        Y_cf = self._predict_codes(A_cf)
        retries = DEFAULT_RETRIES if retries is None else retries
        if retries:
            self._retry_missed(A, Y_m, T, Cs, A_cf, Y_cf, retries, batch_size)
        return self._explanation(X, A, A_cf, Y_m, Y_cf, T, Cs)

    def _retry_missed(self, A: torch.Tensor, Y_m: torch.Tensor, T: torch.Tensor, C: torch.Tensor | None,
                      A_cf: torch.Tensor, Y_cf: torch.Tensor, retries: int, batch_size: int) -> None:
        """In place: replace missed counterfactuals by the valid perturbation nearest to the actor's output."""
        missed = (~self._valid(Y_cf, T)).nonzero().squeeze(1)
        if len(missed) == 0:
            return
        gen = torch.Generator(device=self.device).manual_seed(self.seed)
        rows = missed.repeat_interleave(retries)
        noise = self.params["act_noise"] * torch.randn(len(rows), self.params["latent_dim"], device=self.device,
                                                       generator=gen)
        A_try = self._generate_batched(A[rows], Y_m[rows], T[rows], None if C is None else C[rows], batch_size, noise)
        Y_try = self._predict_codes(A_try)
        ok = self._valid(Y_try, T[rows]).view(len(missed), retries)
        dist = noise.norm(dim=1).view(len(missed), retries).masked_fill(~ok, float("inf"))
        best = dist.argmin(1)
        found = ok.any(1)
        pick = (torch.arange(len(missed), device=self.device) * retries + best)[found]
        A_cf[missed[found]] = A_try[pick]
        Y_cf[missed[found]] = Y_try[pick]

    def _valid(self, Y_cf: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
        if self.regression:
            return interval_reward(Y_cf, T).bool()
        return Y_cf.argmax(1) == T.argmax(1)

    def _explanation(self, X: Any, A: torch.Tensor, A_cf: torch.Tensor, Y_m: torch.Tensor, Y_cf: torch.Tensor,
                     T: torch.Tensor, C: torch.Tensor | None) -> Explanation:
        pre = self.preprocessor
        if self.regression:
            cls, cf_cls, tgt = Y_m.reshape(-1, 1), Y_cf.reshape(-1, 1), T
        else:
            cls, cf_cls, tgt = Y_m.argmax(1, keepdim=True), Y_cf.argmax(1, keepdim=True), T.argmax(1, keepdim=True)
        data = {"orig": {"X": X, "class": _to_numpy(cls)},
                "cf": {"X": pre.from_codes(A_cf), "class": _to_numpy(cf_cls)},
                "target": _to_numpy(tgt), "condition": _to_numpy(C),
                "valid": _to_numpy(self._valid(Y_cf, T if len(T) == len(Y_cf) else T[:1].expand(len(Y_cf), -1)))}
        return Explanation(meta=copy.deepcopy(self.meta), data=data)

    def _explain_diverse(self, X: Any, A: torch.Tensor, T: torch.Tensor, C: Any, batch_size: int,
                         num_samples: int, patience: int, tolerance: float) -> Explanation:
        check_scalar("num_samples", num_samples, int, low=1)
        check_scalar("patience", patience, int, low=1)
        check_scalar("tolerance", tolerance, (int, float), low=0)
        if len(A) != 1:
            raise ValueError(error_message("X", "exactly one row with diversity=True", f"{len(A)} rows",
                                           "call explain once per instance"))
        if not self.conditional:
            raise ValueError("diversity: needs an explainer trained with conditional=True (diverse counterfactuals "
                             "come from random sub-conditions the actor must have learned to follow)")
        if C is None:
            raise ValueError("C: the explainer was trained with conditioning (conditional=True), so explain needs "
                             "a condition; pass C={} to draw diverse counterfactuals under the explainer's immutable "
                             "features and ranges only, or a dict of extra conditions")
        if isinstance(C, (list, tuple)) and len(C) > 1:
            raise ValueError(error_message("C", "one dict with diversity=True", f"a list of {len(C)}"))
        cond = C[0] if isinstance(C, (list, tuple)) and C else (C or {})
        if not isinstance(cond, Mapping):
            raise TypeError(error_message("C", "a dict of conditions ({} for none) with diversity=True",
                                          type(cond).__name__))
        pre, cons = self.preprocessor, self.constraints
        Y_m = self._predict_codes(A)
        gen = torch.Generator(self.device).manual_seed(self.seed + 7)
        A_rep = A.expand(batch_size, -1).contiguous()
        Y_rep, T_rep = Y_m.expand(batch_size, -1), T[:1].expand(batch_size, -1)
        kept: list[torch.Tensor] = []
        keys: set = set()
        scale = torch.as_tensor(pre.std_, device=self.device) * max(tolerance, 1e-12)
        for _ in range(patience):
            Cd = cons.condition_from_dicts(A_rep, cond, diverse=True, generator=gen)
            A_cf = self._generate(A_rep, Y_rep, T_rep, Cd)
            ok = self._valid(self._predict_codes(A_cf), T_rep)
            for row in A_cf[ok]:
                num = torch.round(row[pre.num_idx_] / scale).long().tolist() if pre.num_idx_ else []
                key = (tuple(num), tuple(row[pre.cat_idx_].long().tolist()))
                if key not in keys:
                    keys.add(key)
                    kept.append(row)
                if len(kept) >= num_samples:
                    break
            if len(kept) >= num_samples:
                break
        A_cf = torch.stack(kept) if kept else A[:0]
        Y_cf = self._predict_codes(A_cf) if kept else Y_m[:0]
        exp = self._explanation(X, A, A_cf, Y_m, Y_cf, T[:1], None)
        exp.data["condition"] = None
        return exp

    # ------------------------------------------------------------------------------------------------- save / load
    def save(self, path: str | os.PathLike, training_state: bool = True) -> None:
        """As :meth:`CounterfactualRL.save`, plus ``tabular.json`` (preprocessor statistics, constraints)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        io.save_json(path / "tabular.json", {"preprocessor": self.preprocessor.to_config(),
                                             **self._tabular_params()})
        super().save(path, training_state)

    @classmethod
    def load(cls, path: str | os.PathLike, predictor: Callable, *, device: Any = None,
             **kwargs: Any) -> "CounterfactualRLTabular":
        """Load a saved explainer; the preprocessor and constraints come from ``tabular.json`` (no pickle)."""
        return super().load(path, predictor, device=device, **kwargs)

    @classmethod
    def _from_saved(cls, path: Path, config: dict[str, Any], predictor: Callable, nets: dict[str, nn.Module],
                    kwargs: dict[str, Any], device: torch.device, weights: dict[str, torch.Tensor]):
        tab = io.load_json(path / "tabular.json")
        pre = TabularPreprocessor.from_config(tab["preprocessor"])
        params = config["params"]
        kwargs = {k: v for k, v in kwargs.items() if k not in ("encoder_preprocessor", "decoder_inv_preprocessor",
                                                               "postprocessing_funcs", "conditional_func")}
        return cls(predictor, nets["encoder"], nets["decoder"], params["latent_dim"], pre, None,
                   params["coeff_sparsity"], params["coeff_consistency"],
                   immutable_features=tab["immutable_features"], ranges=tab["ranges"],
                   weight_num=tab["weight_num"], weight_cat=tab["weight_cat"], seed=params["seed"],
                   conditional=tab["conditional"], device=device, **cls._saved_options(config),
                   actor=nets["actor"], critic=nets["critic"], **kwargs)

