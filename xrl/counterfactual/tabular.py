"""``CounterfactualRLTabular``: CFRL for mixed numerical/categorical data (alibi's API): the core of
:class:`~xrl.counterfactual.CounterfactualRL` with a :class:`~.spaces.TabularSpace`."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn as nn

from .. import io
from .._validation import check_is_fitted, check_scalar, check_type, error_message
from ..models import tabular as _tabular_models  # noqa: F401  (registers TabularEncoder/Decoder for load)
from ..preprocessing import TabularPreprocessor, normalize_category_map
from .cfrl import CounterfactualRL
from .ddpg import digest
from .conditioning import TabularConstraints
from .config import as_int
from .explanation import Explanation
from .spaces import Rows, TabularSpace
from .blackbox import interval_reward, to_numpy

__all__ = ["CounterfactualRLTabular", "DEFAULT_RETRIES", "interval_reward"]

DEFAULT_RETRIES = 16
"""``explain(retries=None)``: perturbations of the actor's output tried for each row whose counterfactual missed."""


def _resolve_preprocessor(encoder_preprocessor: Any, decoder_inv_preprocessor: Any) -> TabularPreprocessor:
    pre = getattr(encoder_preprocessor, "__self__", encoder_preprocessor)  # the object behind a bound .transform
    if not isinstance(pre, TabularPreprocessor):
        raise TypeError(error_message(
            "encoder_preprocessor", "a fitted xrl.preprocessing.TabularPreprocessor (or its .transform)",
            type(encoder_preprocessor).__name__, "build it with TabularPreprocessor(feature_names, category_map)"
            ".fit(X_train): the explainer needs its statistics and exact inverse to enforce constraints"))
    if getattr(pre, "mean_", None) is None:
        raise RuntimeError("encoder_preprocessor: the TabularPreprocessor is not fitted yet: call fit(X_train) first")
    inv = decoder_inv_preprocessor
    if inv is not None and getattr(inv, "__self__", inv) is not pre:
        raise ValueError(error_message("decoder_inv_preprocessor", "None or the same TabularPreprocessor's "
                                       "inverse_transform", type(inv).__name__, "a different inverse would decode "
                                       "counterfactuals inconsistently with the encoder"))
    return pre


def _row_seed(seed: int, *parts: torch.Tensor | None) -> int:
    """A 64-bit seed from the explainer's ``seed`` and a row's tensors (codes, target, condition): the row's
    perturbations in ``explain(retries=...)`` are the same wherever and with whatever other rows it is explained."""
    return int.from_bytes(digest(int(seed).to_bytes(8, "little", signed=True), *parts, size=8), "little")


class CounterfactualRLTabular(CounterfactualRL):
    """Counterfactuals with RL for tabular data with immutable features, ranges and explain-time conditions.

    A heterogeneous autoencoder (:class:`xrl.models.tabular.HeAE`), sparsity = L1 on standardised numbers + L0 on
    categories, random training conditions (so that conditions in the data's units work at explain time), and
    decoding through :class:`~.conditioning.TabularConstraints`, which makes every counterfactual satisfy immutable
    features, ranges and conditions exactly. Regression black boxes take target intervals ``[low, high]``. Parameters
    not listed below are as in :class:`CounterfactualRL` (alibi's Adult example: coefficients 0.5 and 0.5).

    Parameters
    ----------
    predictor
        As in :class:`CounterfactualRL`, on the original format (what ``encoder_preprocessor`` was fitted on).
    encoder, decoder
        A trained :class:`~xrl.models.tabular.HeAE`'s halves (the decoder returns the heads ``[numerical (if any),
        categorical logits...]`` in the preprocessor's ``head_dims``).
    encoder_preprocessor, decoder_inv_preprocessor
        The fitted :class:`~xrl.preprocessing.TabularPreprocessor` (or its ``transform``), and ``None`` or the same
        object's ``inverse_transform`` (alibi passes a pair of functions; here they must come from one object).
    feature_names, category_map
        Optional; when given they must match the preprocessor's (``category_map`` keys by index or name).
    immutable_features, ranges, weight_num, weight_cat
        Features that never change; allowed changes as fractions of the training range (``{"Age": [0, 1]}``: Age may
        only increase; see :class:`~.conditioning.TabularConstraints`); weights of the numerical (L1) and categorical
        (L0) sparsity terms. ``postprocessing_funcs`` and ``conditional_func`` are built from these and ``C``.
    conditional
        Train with random conditions (default) so that explain-time conditions and ``diversity`` work; with False
        the actor sees no condition and only immutables and ranges are enforced.

    Examples
    --------
    >>> pre = TabularPreprocessor(adult.feature_names, adult.category_map).fit(X_train)       # doctest: +SKIP
    >>> ae = HeAE(TabularEncoder(pre.model_dim, 128, 15), TabularDecoder(15, 128, pre.head_dims))  # doctest: +SKIP
    >>> cf = CounterfactualRLTabular(predictor, ae.encoder, ae.decoder, 15, pre, None, 0.5, 0.5,
    ...                              immutable_features=["Sex"], ranges={"Age": [0, 1]},
    ...                              train_steps=10_000).fit(X_train)                            # doctest: +SKIP
    >>> exp = cf.explain(X_test[:100], Y_t=np.array([1]), C={"Age": [0, 20]})                    # doctest: +SKIP
    """

    name = "CounterfactualRLTabular"
    _intervals = True

    def __init__(self, predictor: Callable, encoder: nn.Module, decoder: nn.Module, latent_dim: int,
                 encoder_preprocessor: Any, decoder_inv_preprocessor: Any, coeff_sparsity: float,
                 coeff_consistency: float, feature_names: Sequence[str] | None = None,
                 category_map: Mapping | None = None, immutable_features: Sequence[str] | None = None,
                 ranges: Mapping[str, Sequence[float]] | None = None, weight_num: float = 1.0,
                 weight_cat: float = 1.0, backend: str = "pytorch", seed: int = 0, *, conditional: bool = True,
                 **kwargs: Any) -> None:
        for key in sorted({"postprocessing_funcs", "conditional_func"} & set(kwargs)):
            raise ValueError(error_message(key, "not to be passed to CounterfactualRLTabular", "a value",
                                           "the explainer builds its own constraint-safe post-processing and "
                                           "conditioning from immutable_features, ranges and C"))
        pre = _resolve_preprocessor(encoder_preprocessor, decoder_inv_preprocessor)
        if feature_names is not None and list(feature_names) != pre.feature_names_:
            raise ValueError(error_message("feature_names", f"the preprocessor's feature names {pre.feature_names_}",
                                           list(feature_names)))
        if category_map is not None and normalize_category_map(category_map, pre.feature_names_) != pre.category_map_:
            raise ValueError(error_message("category_map", "the preprocessor's category map", category_map))
        for name, weight in (("weight_num", weight_num), ("weight_cat", weight_cat)):
            check_scalar(name, weight, low=0)
        check_type("conditional", conditional, bool)
        self.preprocessor, self.constraints = pre, TabularConstraints(pre, immutable_features, ranges)
        self.weight_num, self.weight_cat, self.conditional = float(weight_num), float(weight_cat), conditional
        super().__init__(predictor, encoder, decoder, coeff_sparsity, coeff_consistency, latent_dim=latent_dim,
                         backend=backend, seed=seed, **kwargs)
        self.space = TabularSpace(self.constraints, conditional, self.weight_num, self.weight_cat, self.device)

    def _tabular(self) -> dict[str, Any]:
        return {"immutable_features": list(self.constraints.immutable_features),
                "ranges": dict(self.constraints.ranges), "weight_num": self.weight_num, "weight_cat": self.weight_cat,
                "conditional": self.conditional, "feature_names": list(self.preprocessor.feature_names_),
                "category_map": {int(k): v for k, v in self.preprocessor.category_map_.items()}}

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), **self._tabular()}

    def explain(self, X: Any, Y_t: Any, C: Any = None, batch_size: int = 100, diversity: bool = False,
                num_samples: int = 1, patience: int = 1000, tolerance: float = 1e-3, *,
                retries: int | None = None) -> Explanation:
        """Counterfactuals of ``X`` (original format) towards ``Y_t``.

        Parameters
        ----------
        X, Y_t
            Rows in the original format ``[N, F]`` (array or DataFrame), ``N >= 1``; a target class per row or one for
            all (classification), target interval(s) ``[low, high]`` (regression).
        C
            ``None`` or ``{}``: the explainer's immutable features and ranges only (alibi's behaviour); a dict in
            original units for all rows (``{"Age": [0, 20], "Workclass": ["Private"]}``), a list of 1 or N dicts, or
            a raw ``[N, cond_dim]`` array. Only ``None`` for an explainer built with ``conditional=False``.
        batch_size
            Rows per actor forward pass (the black box is called once per 10,000 rows).
        diversity, num_samples, patience, tolerance
            With ``diversity=True`` (one row only): draw random sub-conditions of ``C`` for ``patience`` batches at
            most, keep the counterfactuals that reach the target, drop near-duplicates (numbers within ``tolerance``
            standard deviations and the same categories) and return up to ``num_samples``.
        retries
            For rows whose counterfactual misses the target, try this many perturbations of the actor's latent output
            (Gaussian, standard deviation ``act_noise``, seeded by the explainer's seed and the row itself) and keep the
            valid one nearest to the actor's output; constraints still hold. ``None``: ``DEFAULT_RETRIES`` (16); 0
            returns the actor's answer only, as alibi does. Costs ``retries`` black-box rows per missed row.

        Returns
        -------
        Explanation
            ``data["orig"]["X"|"class"]``, ``data["cf"]["X"|"class"]`` (original format), ``data["target"]``,
            ``data["condition"]`` and ``data["valid"]`` (bool per counterfactual).
        """
        check_is_fitted(self, "task")
        batch_size = as_int("batch_size", batch_size, 1)
        rows = self.space.rows(self.space.check(X))
        T = self.task.targets(Y_t, len(rows), self.device)
        retries = None if retries is None else as_int("retries", retries, 0)
        if diversity:
            if retries:
                raise ValueError("retries: only for diversity=False (diverse mode already keeps valid samples only)")
            return self._explain_diverse(X, rows, T, C, batch_size, num_samples, patience, tolerance)
        retries = DEFAULT_RETRIES if retries is None else retries
        Cs = self.space.explain_condition(C, rows, self.cond_dim)
        Y_m = self._label(rows, len(rows), batch_size)
        cf = self._generate(rows, Y_m, T, Cs, batch_size)
        Y_cf = self._label(cf, len(rows), batch_size)
        if retries:
            self._retry_missed(rows, Y_m, T, Cs, cf, Y_cf, retries, batch_size)
        return self._explanation(X, Y_m, cf, Y_cf, T, Cs, valid=to_numpy(self.task.valid(Y_cf, T)))

    def _retry_missed(self, rows: Rows, Y_m: torch.Tensor, T: torch.Tensor, C: torch.Tensor | None, cf: Rows,
                      Y_cf: torch.Tensor, retries: int, batch_size: int) -> None:
        """In place: replace missed counterfactuals by the valid perturbation nearest to the actor's output. A row's
        perturbations are seeded by the row itself (:func:`_row_seed`) and decoded with the other missed rows of its
        ``batch_size`` batch only, so explaining ``X`` in pieces of whole batches gives the same result as one call."""
        missed = (~self.task.valid(Y_cf, T)).nonzero().squeeze(1)
        if len(missed) == 0:
            return
        cfg, noise, tries = self.config, [], []
        for b in torch.unique(missed // batch_size):
            m = missed[missed // batch_size == b]
            noise.append(torch.cat([cfg.act_noise * torch.randn(
                retries, cfg.latent_dim, device=self.device, generator=torch.Generator(self.device).manual_seed(
                    _row_seed(cfg.seed, rows.codes[i], T[i], None if C is None else C[i]))) for i in m.tolist()]))
            r = m.repeat_interleave(retries)
            tries.append(self._generate(rows[r], Y_m[r], T[r], None if C is None else C[r], batch_size, noise[-1]))
        noise, tries, r = torch.cat(noise), self.space.join(tries), missed.repeat_interleave(retries)
        Y_try = self._label(tries, len(r), batch_size)
        ok = self.task.valid(Y_try, T[r]).view(len(missed), retries)
        dist = noise.norm(dim=1).view(len(missed), retries).masked_fill(~ok, float("inf"))
        found = ok.any(1)
        pick = (torch.arange(len(missed), device=self.device) * retries + dist.argmin(1))[found]
        cf.model[missed[found]], cf.codes[missed[found]] = tries.model[pick], tries.codes[pick]
        Y_cf[missed[found]] = Y_try[pick]

    def _explain_diverse(self, X: Any, rows: Rows, T: torch.Tensor, C: Any, batch_size: int, num_samples: int,
                         patience: int, tolerance: float) -> Explanation:
        num_samples, patience = as_int("num_samples", num_samples, 1), as_int("patience", patience, 1)
        check_scalar("tolerance", tolerance, (int, float), low=0)
        if len(rows) != 1:
            raise ValueError(error_message("X", "exactly one row with diversity=True", f"{len(rows)} rows",
                                           "call explain once per instance"))
        if not self.conditional:
            raise ValueError("diversity: needs an explainer trained with conditional=True (diverse counterfactuals "
                             "come from random sub-conditions the actor must have learned to follow)")
        cond = C[0] if isinstance(C, (list, tuple)) and len(C) == 1 else (C or {})
        check_type("C", cond, Mapping, "one dict of conditions ({} for none) with diversity=True")
        pre, Y_m = self.preprocessor, self._label(rows, 1, 1)
        gen = torch.Generator(self.device).manual_seed(self.config.seed + 7)
        rep = rows[[0] * batch_size]
        Y_rep, T_rep = Y_m.expand(batch_size, -1), T[:1].expand(batch_size, -1)
        scale = torch.as_tensor(pre.std_, device=self.device) * max(tolerance, 1e-12)
        kept: dict[tuple, torch.Tensor] = {}  # the first valid row of each (numbers in tolerance units, categories)
        for _ in range(patience):
            Cd = self.constraints.condition_from_dicts(rep.codes, cond, diverse=True, generator=gen)
            cf = self._generate(rep, Y_rep, T_rep, Cd, batch_size)
            for row in cf.codes[self.task.valid(self._label(cf, batch_size, batch_size), T_rep)]:
                kept.setdefault((tuple(torch.round(row[pre.num_idx_] / scale).tolist()),
                                 tuple(row[pre.cat_idx_].tolist())), row)
            if len(kept) >= num_samples:
                break
        cf = self.space.rows(torch.stack(list(kept.values())[:num_samples])) if kept else rows[:0]
        Y_cf = self._label(cf, len(cf), batch_size) if kept else Y_m[:0]
        T1 = T[:1].expand(len(cf), -1)
        return self._explanation(X, Y_m, cf, Y_cf, T1, None, valid=to_numpy(self.task.valid(Y_cf, T1)))

    def _save_extra(self, directory: Any) -> None:
        io.save_json(directory / "tabular.json", {"preprocessor": self.preprocessor.to_config(), **self._tabular()})

    @classmethod
    def _from_saved(cls, path: Any, predictor: Callable, nets: dict[str, nn.Module], settings: dict[str, Any],
                    device: torch.device) -> "CounterfactualRLTabular":
        tab = io.load_json(path / "tabular.json")
        own = {k: tab[k] for k in ("immutable_features", "ranges", "weight_num", "weight_cat", "conditional")}
        return cls(predictor, nets["encoder"], nets["decoder"], encoder_preprocessor=TabularPreprocessor.from_config(
            tab["preprocessor"]), decoder_inv_preprocessor=None, device=device, actor=nets["actor"],
            critic=nets["critic"], **own, **settings)
