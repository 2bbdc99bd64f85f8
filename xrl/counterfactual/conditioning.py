"""Feature constraints for tabular CFRL: immutable features, ranges, conditioning vectors, constraint-safe decoding.

A row's conditioning vector ``C`` (alibi's layout) holds, per numerical feature in column order, ``[c_low, c_high]``
with ``range_low <= c_low <= 0 <= c_high <= range_high``: the counterfactual value lies in ``[a + c_low * R, a + c_high
* R]`` (``a`` the original value, ``R = max - min`` over the training data); then, per categorical feature, a 0/1 mask
over its categories that always contains the original one. Immutable features: ``c_low = c_high = 0``, one-hot mask.
:meth:`TabularConstraints.project` decodes so that ``C`` holds *exactly* in original units, whatever the decoder says.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .._validation import check_type, error_message, suggest
from ..preprocessing import TabularPreprocessor

__all__ = ["TabularConstraints"]


def _pair(name: str, value: Any, units: str, example: str) -> tuple[float, float]:
    """``[low, high]`` with ``low <= 0 <= high`` (a change relative to the original value), or a clear error."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise TypeError(error_message(name, f"a pair [low, high] of changes ({units})", value)) from exc
    if not (np.isfinite(low) and np.isfinite(high)) or low > 0 or high < 0:
        raise ValueError(error_message(name, f"finite low <= 0 <= high (changes relative to the original value, "
                                       f"{units})", value, example))
    return low, high

_EPS = 1e-6  # relative slack (in units of R) for float32 conditioning vectors around integer bounds


class TabularConstraints:
    """Validated immutable features and ranges of a fitted :class:`~xrl.preprocessing.TabularPreprocessor`.

    ``immutable_features``: features that never change; ``ranges``: ``{numerical feature: [low, high]}`` with ``-1 <=
    low <= 0 <= high <= 1``, fractions of the feature's training range ``max - min`` (alibi's convention): ``{"Age":
    [0, 1]}`` means "Age may only increase".
    """

    def __init__(self, preprocessor: TabularPreprocessor, immutable_features: Sequence[str] | None = None,
                 ranges: Mapping[str, Sequence[float]] | None = None) -> None:
        pre = self.pre = preprocessor
        names = pre.feature_names_
        if isinstance(immutable_features, str):
            raise TypeError(error_message("immutable_features", "a list of feature names", immutable_features,
                                          f"use [{immutable_features!r}]"))
        immutable = list(immutable_features or [])
        for f in immutable:
            if f not in names:
                raise ValueError(error_message("immutable_features", "feature names", f,
                                               suggest(f, names) or f"features are {names}"))
        num_names = [names[j] for j in pre.num_idx_]
        self.range_low, self.range_high = np.full(len(num_names), -1.0), np.full(len(num_names), 1.0)
        for f, rng in dict(ranges or {}).items():
            i = self._range_index(f, rng, num_names, immutable)
            self.range_low[i], self.range_high[i] = (float(v) for v in rng)
        self.immutable_features = immutable
        self.ranges = {f: [float(v) for v in r] for f, r in dict(ranges or {}).items()}
        self.num_immutable = np.array([names[j] in immutable for j in pre.num_idx_], bool)
        self.range_low[self.num_immutable] = self.range_high[self.num_immutable] = 0.0
        self.cat_immutable = np.array([names[j] in immutable for j in pre.cat_idx_], bool)
        self.n_num = len(pre.num_idx_)
        self.cond_dim = 2 * self.n_num + sum(pre.cat_sizes_)
        self._cache: dict[Any, dict[str, torch.Tensor]] = {}

    def _range_index(self, f: str, rng: Any, num_names: list[str], immutable: list[str]) -> int:
        names = self.pre.feature_names_
        if f not in num_names:  # an unknown or a categorical feature
            remedy = (suggest(f, names) or f"numerical features are {num_names}" if f not in names else
                      "restrict a categorical feature with a condition at explain time, or make it immutable")
            raise ValueError(error_message("ranges", "numerical features only, by name", f, remedy))
        if f in immutable:
            raise ValueError(error_message(f"ranges[{f!r}]", "no range for an immutable feature", list(rng),
                                           "an immutable feature cannot change at all: drop one of the two"))
        low, high = _pair(f"ranges[{f!r}]", rng, "as fractions of the training range",
                          "e.g. [0, 1] lets the feature only increase, [-1, 0] only decrease")
        i = num_names.index(f)
        if low < -1 or high > 1:
            R = self.pre.range_[i]
            raise ValueError(error_message(
                f"ranges[{f!r}]", "fractions of the feature's training range in [-1, 1]", [low, high],
                f"ranges are not in the feature's units: a change of {high:g} is [0, {high / R:.3g}] here (range "
                f"{R:g}); give changes in original units at explain time, e.g. C={{{f!r}: [{low:g}, {high:g}]}}"))
        return i

    def _t(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The statistics as tensors on ``device`` (cached)."""
        if device not in self._cache:
            pre, f64 = self.pre, dict(dtype=torch.float64, device=device)
            cols = np.concatenate([[imm] * k for k, imm in zip(pre.cat_sizes_, self.cat_immutable)] or [[]])
            stats = {"low": self.range_low, "high": self.range_high, "R": pre.range_, "min": pre.min_, "max": pre.max_,
                     "mean": pre.mean_, "std": pre.std_}
            self._cache[device] = {**{k: torch.tensor(v, **f64) for k, v in stats.items()},
                                   "is_int": torch.tensor(pre.is_int_, device=device),
                                   "num_idx": torch.tensor(pre.num_idx_, dtype=torch.long, device=device),
                                   "imm_cols": torch.tensor(cols, dtype=torch.bool, device=device)}
        return self._cache[device]

    def _onehots(self, A: torch.Tensor) -> list[torch.Tensor]:
        return [F.one_hot(A[:, j].long(), k) for j, k in zip(self.pre.cat_idx_, self.pre.cat_sizes_)]  # [B, K_j]

    def default_condition(self, A: torch.Tensor) -> torch.Tensor:
        """No condition beyond immutables/ranges: ``[range_low, range_high]`` and all-ones masks.

        ``A``: float64 codes ``[B, F]``; returns float64 ``[B, cond_dim]`` (cast to float32 for the actor only, so
        bounds given in original units are enforced to double precision)."""
        t, B = self._t(A.device), A.shape[0]
        parts = [torch.stack([t["low"], t["high"]], 1).reshape(1, -1).expand(B, -1)] if self.n_num else []
        for oh, imm in zip(self._onehots(A), self.cat_immutable):
            parts.append(oh.double() if imm else torch.ones_like(oh, dtype=torch.float64))
        return torch.cat(parts, 1)

    def random_condition(self, A: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Training-time random conditions (alibi's scheme): ``c_low = b1 * range_low``, ``c_high = b2 * range_high``
        with ``b ~ Beta(2, 2)``; masks keep the original category and each other one with probability 1/2."""
        t, B, parts = self._t(A.device), A.shape[0], []
        if self.n_num:  # Beta(2, 2) is the median of three U(0, 1): sampled with our own generator
            u = torch.rand(B, self.n_num, 2, 3, generator=generator, device=A.device, dtype=torch.float64)
            b = u.median(dim=-1).values  # [B, n_num, 2]
            parts.append(torch.stack([b[..., 0] * t["low"], b[..., 1] * t["high"]], 2).reshape(B, -1))
        if self.pre.cat_idx_:
            onehot = self.pre.codes_to_model(A)[:, self.n_num:] > 0  # [B, sum K]
            keep = (torch.rand(onehot.shape, generator=generator, device=A.device) > 0.5) & ~t["imm_cols"]
            parts.append((keep | onehot).double())
        return torch.cat(parts, 1).float()

    def condition_from_dicts(self, A: torch.Tensor, C: Mapping | Sequence[Mapping], diverse: bool = False,
                             generator: torch.Generator | None = None) -> torch.Tensor:
        """Explain-time conditions in original units -> ``C`` ``[B, cond_dim]`` (float64).

        ``C`` is one dict for all rows or a list of ``1`` or ``B`` dicts, e.g.
        ``{"Age": [0, 20], "Workclass": ["State-gov", "Private"]}``: Age may grow by up to 20 (years), Workclass may
        become State-gov or Private (the original value stays allowed). Bounds are intersected with the training
        ranges; immutable features cannot be conditioned. With ``diverse=True`` every bound is scaled by U(0, 1) and
        each allowed non-original category is kept with probability 1/2 (a random, still valid, sub-condition).
        """
        B = A.shape[0]
        dicts = [C] if isinstance(C, Mapping) else list(C)
        if len(dicts) not in (1, B):
            raise ValueError(error_message("C", f"one dict or a list of 1 or {B} dicts (one per row of X)",
                                           f"a list of {len(dicts)}"))
        base = self.default_condition(A)
        for r, d in enumerate(dicts):
            check_type(f"C[{r}]", d, Mapping, "a dict {feature: condition}")
            rows = slice(None) if len(dicts) == 1 else slice(r, r + 1)
            for f, cond in d.items():
                self._apply(base, A, rows, f"C[{r}]", f, cond)
        if diverse:  # bounds scaled by U(0, 1); allowed categories kept with probability 1/2, the original always
            base *= torch.cat([torch.rand(B, 2 * self.n_num, generator=generator, device=A.device, dtype=torch.float64),
                               (torch.rand(B, self.cond_dim - 2 * self.n_num, generator=generator, device=A.device)
                                > 0.5).double()], 1)
            base[:, 2 * self.n_num:] = torch.clamp(base[:, 2 * self.n_num:] + self.pre.codes_to_model(A, torch.float64)
                                                   [:, self.n_num:], max=1.0)
        return base

    def _apply(self, base: torch.Tensor, A: torch.Tensor, rows: slice, name: str, f: str, cond: Any) -> None:
        """Write one feature's condition (original units) into ``base`` for ``rows``."""
        pre, names = self.pre, self.pre.feature_names_
        if f not in names:
            raise ValueError(error_message(name, "feature names as keys", f,
                                           suggest(f, names) or f"features are {names}"))
        if f in self.immutable_features:
            raise ValueError(error_message(f"{name}[{f!r}]", "no condition on an immutable feature", cond,
                                           "the explainer was built with it immutable: it cannot change"))
        j = names.index(f)
        if j in pre.num_idx_:
            i = pre.num_idx_.index(j)
            low, high = _pair(f"{name}[{f!r}]", cond, "in the feature's units", f"e.g. [0, 20] lets {f} grow by 20")
            R = float(pre.range_[i])
            base[rows, 2 * i] = max(low / R, self.range_low[i])
            base[rows, 2 * i + 1] = min(high / R, self.range_high[i])
            return
        c, cats = pre.cat_idx_.index(j), pre.category_map_[j]
        if isinstance(cond, (str, bytes)) or not isinstance(cond, (Sequence, np.ndarray)):
            raise TypeError(error_message(f"{name}[{f!r}]", "a list of allowed categories", cond, f"use [{cond!r}]"))
        mask = torch.zeros(len(cats), dtype=torch.float64, device=A.device)
        for v in cond:
            if str(v) in cats:
                mask[cats.index(str(v))] = 1.0
            elif isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v < len(cats):
                mask[int(v)] = 1.0
            else:
                raise ValueError(error_message(f"{name}[{f!r}]", f"categories of {f} ({cats})", v,
                                               suggest(str(v), cats) or None))
        col = 2 * self.n_num + sum(pre.cat_sizes_[:c])
        base[rows, col:col + len(cats)] = torch.clamp(mask + F.one_hot(A[rows, j].long(), len(cats)).double(), max=1)

    def check_condition(self, C: torch.Tensor, A: torch.Tensor, name: str = "C") -> None:
        """Validate a raw conditioning array against the rows ``A`` (shape, signs, range limits, masks)."""
        if C.ndim != 2 or C.shape != (A.shape[0], self.cond_dim):
            raise ValueError(error_message(name, f"an array [{A.shape[0]}, {self.cond_dim}] (2 per numerical feature "
                                           "+ one mask entry per category)", C,
                                           "or pass dicts in original units, e.g. {'Age': [0, 20]}"))
        if not torch.isfinite(C).all():
            raise ValueError(error_message(name, "finite values", C))
        if self.n_num:
            num, t, tol = C[:, :2 * self.n_num].double().reshape(-1, self.n_num, 2), self._t(C.device), 1e-6
            if (num[..., 0] > tol).any() or (num[..., 1] < -tol).any():
                raise ValueError(error_message(name, "c_low <= 0 <= c_high for every numerical feature", C))
            if (num[..., 0] < t["low"] - tol).any() or (num[..., 1] > t["high"] + tol).any():
                raise ValueError(error_message(name, "numerical bounds inside the explainer's ranges and immutable "
                                               "features", C))
        masks = C[:, 2 * self.n_num:]
        if not ((masks == 0) | (masks == 1)).all():
            raise ValueError(error_message(name, "0/1 masks for the categorical features", C))
        for oh, m, imm in zip(self._onehots(A), torch.split(masks, list(self.pre.cat_sizes_), 1), self.cat_immutable):
            if ((oh == 1) & (m == 0)).any():
                raise ValueError(error_message(name, "masks that allow each row's original category", C))
            if imm and (m.sum(1) != 1).any():
                raise ValueError(error_message(name, "one-hot masks for immutable categorical features", C))

    def bounds(self, A: torch.Tensor, C: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Allowed ``[low, high]`` per numerical feature in original units, ``[B, n_num]`` float64 each.

        Always contains the original value; inside the training ``[min, max]`` unless the original is outside it;
        integer features get integer bounds."""
        t = self._t(A.device)
        a, R = A[:, t["num_idx"]], t["R"]  # [B, n_num]
        c = C[:, :2 * self.n_num].double().reshape(-1, self.n_num, 2)
        low = torch.maximum(a + c[..., 0] * R, torch.minimum(t["min"], a))
        high = torch.minimum(a + c[..., 1] * R, torch.maximum(t["max"], a))
        low = torch.where(t["is_int"], torch.ceil(low - _EPS * R), low)
        high = torch.where(t["is_int"], torch.floor(high + _EPS * R), high)
        return torch.minimum(low, a), torch.maximum(high, a)  # never exclude the original (float rounding of c * R)

    def project(self, heads: Sequence[torch.Tensor], A: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
        """Decoder heads -> counterfactual codes ``[B, F]`` (float64) that satisfy ``C`` exactly.

        ``heads``: numerical head (standardised) then categorical logits, as the decoder returns them;
        ``A``: float64 codes of the original rows; ``C``: ``[B, cond_dim]``."""
        pre, out, h = self.pre, A.clone(), int(self.n_num > 0)  # h: the first categorical head
        if self.n_num:
            t = self._t(A.device)
            x = heads[0].double() * t["std"] + t["mean"]  # [B, n_num], original units
            x = torch.where(t["is_int"], torch.round(x), x)
            low, high = self.bounds(A, C)
            out[:, t["num_idx"]] = torch.minimum(torch.maximum(x, low), high)
        if pre.cat_idx_:
            logits = pre.pad_categorical(torch.cat([x.detach() for x in heads[h:]], 1), float("-inf"))
            mask = pre.pad_categorical(C[:, 2 * self.n_num:].to(logits.dtype), 0.0)  # [B, n_cat, Kmax]
            out[:, pre._layout(A.device)["cat_idx"]] = logits.masked_fill(mask == 0, float("-inf")).argmax(-1).double()
        return out
