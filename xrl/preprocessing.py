"""Mixed numerical/categorical data to model space and back (for the heterogeneous autoencoder and tabular CFRL).

Three spaces:

- **original**: what the user and the black box see: a numpy array (numeric or object dtype) or a pandas DataFrame;
  categorical cells hold category names or integer codes (``category_map[j][code]``).
- **codes** (internal, float64 ``[N, F]``): numbers as they are, categorical cells as integer codes, columns in the
  original order. Exact: every original value maps to one code row and back.
- **model** (float32 ``[N, n_num + sum(K_j)]``): standardised numerical features first (in column order), then one
  one-hot block per categorical feature (in column order): the layout of :class:`xrl.models.tabular.HeAE`'s heads.

Integer-valued numerical features (inferred at ``fit`` or given in ``feature_types``) are rounded to the nearest
integer on the way back (alibi #549 truncated 46.6 to 46). Numeric-only data needs no ``category_map`` and
categorical-only data works too (alibi #809).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ._validation import check_is_fitted, error_message, suggest

__all__ = ["TabularPreprocessor", "normalize_category_map"]


def normalize_category_map(category_map: Mapping[Any, Sequence[Any]] | None,
                           feature_names: Sequence[str]) -> dict[int, list[str]]:
    """Return ``{column index: [category names]}``, accepting keys as indices or feature names; validated."""
    if category_map is None:
        return {}
    if not isinstance(category_map, Mapping):
        raise TypeError(error_message("category_map", "a dict {column index or feature name: [categories]}",
                                      type(category_map).__name__))
    out: dict[int, list[str]] = {}
    for key, cats in category_map.items():
        if isinstance(key, str):
            if key not in feature_names:
                hint = suggest(key, feature_names)
                raise ValueError(error_message("category_map", "keys that are feature names or column indices",
                                               key, hint or f"feature names are {list(feature_names)}"))
            idx = list(feature_names).index(key)
        elif isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            idx = int(key)
            if not 0 <= idx < len(feature_names):
                raise ValueError(error_message("category_map", f"column indices in [0, {len(feature_names)})", key))
        else:
            raise TypeError(error_message("category_map", "keys that are feature names or column indices", key))
        if idx in out:
            raise ValueError(error_message("category_map", "each feature once", key,
                                           "the same column is given by index and by name"))
        cats = [str(c) for c in cats]
        if len(cats) < 1 or len(set(cats)) != len(cats):
            raise ValueError(error_message(f"category_map[{key!r}]", "a non-empty list of distinct categories", cats))
        out[idx] = cats
    return dict(sorted(out.items()))


class TabularPreprocessor:
    """Standardise numerical features, one-hot encode categorical ones, and invert exactly.

    Parameters
    ----------
    feature_names : list of str, optional
        Column names; taken from a DataFrame's columns when omitted (``x0, x1, ...`` for arrays).
    category_map : dict, optional
        ``{column index or name: [category names]}``; code ``k`` of column ``j`` is ``category_map[j][k]``.
        Omit it for numeric-only data. When it is omitted, columns holding strings are taken as categorical with
        their sorted unique values (later data may then hold unseen categories: pass it explicitly). When it is
        given, every other column must be numerical.
    feature_types : dict, optional
        ``{name: int | float}`` for numerical features; by default a feature whose training values are all whole
        numbers is ``int`` (rounded on the way back), else ``float``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[25, "a"], [40, "b"], [33, "a"]], dtype=object)
    >>> pre = TabularPreprocessor(["age", "kind"], {"kind": ["a", "b"]}).fit(X)
    >>> Z = pre.transform(X)                  # [3, 1 + 2] float32
    >>> (pre.inverse_transform(Z) == X).all()
    True
    """

    def __init__(self, feature_names: Sequence[str] | None = None, category_map: Mapping | None = None,
                 feature_types: Mapping[str, type] | None = None):
        self.feature_names = None if feature_names is None else list(feature_names)
        self.category_map = category_map
        self.feature_types = dict(feature_types or {})
        self.mean_ = None

    # ------------------------------------------------------------------------------------------------ fitting
    def fit(self, X: Any) -> "TabularPreprocessor":
        """Learn feature layout, category codes, means/stds/min/max of numerical features and integer types."""
        is_frame = isinstance(X, pd.DataFrame)
        if len(X) == 0:
            raise ValueError(error_message("X", "at least one row to fit on", X if not is_frame else "an empty "
                                           "DataFrame", "the statistics (mean, std, min, max) need data"))
        if is_frame:
            cols = [str(c) for c in X.columns]
            if self.feature_names is not None and list(self.feature_names) != cols:
                raise ValueError(error_message("feature_names", f"the DataFrame's columns {cols}",
                                               self.feature_names))
            names = cols
        else:
            arr = self._as_2d(X, "X")
            names = self.feature_names or [f"x{i}" for i in range(arr.shape[1])]
            if len(names) != arr.shape[1]:
                raise ValueError(error_message("feature_names", f"{arr.shape[1]} names (one per column of X)",
                                               names))
        if len(set(names)) != len(names):
            raise ValueError(error_message("feature_names", "distinct names", names))
        cmap = normalize_category_map(self.category_map, names)
        # infer categorical columns that hold strings but are missing from the map
        cols_obj = [X.iloc[:, j].to_numpy() for j in range(len(names))] if is_frame else \
            [self._as_2d(X, "X")[:, j] for j in range(len(names))]
        for j, col in enumerate(cols_obj):
            if self.category_map is None and col.dtype.kind in "OUSb" and any(isinstance(v, (str, bool, np.bool_)) for v in
                                                                  col[:1000]):
                cmap[j] = sorted({str(v) for v in col})
        self.category_map_ = dict(sorted(cmap.items()))
        self.feature_names_ = names
        unknown = [k for k in self.feature_types if k not in names]
        if unknown:
            raise ValueError(error_message("feature_types", "numerical feature names", unknown[0],
                                           suggest(unknown[0], names) or None))
        self.cat_idx_ = list(self.category_map_)
        self.num_idx_ = [j for j in range(len(names)) if j not in self.category_map_]
        for k in self.feature_types:
            if names.index(k) in self.category_map_:
                raise ValueError(error_message("feature_types", "numerical features only", k,
                                               "categorical features are typed by category_map"))
        self.cat_sizes_ = [len(self.category_map_[j]) for j in self.cat_idx_]
        self._lookup = {j: {c: k for k, c in enumerate(self.category_map_[j])} for j in self.cat_idx_}
        self.input_is_frame_ = is_frame
        self.frame_dtypes_ = X.dtypes.to_dict() if is_frame else None
        self.mean_ = np.zeros(0)  # marks "fitting" so to_codes can run
        # remember whether categorical cells came as names (strings) or codes, per column, for the inverse
        self.cat_as_str_ = {j: any(isinstance(v, str) for v in cols_obj[j][:1000]) for j in self.cat_idx_}
        self.input_dtype_ = None if is_frame else np.asarray(X).dtype
        A = self.to_codes(X)
        num = A[:, self.num_idx_]
        self.mean_, std = num.mean(0), num.std(0)
        self.std_ = np.where(std > 0, std, 1.0)
        self.min_, self.max_ = num.min(0), num.max(0)
        self.is_int_ = np.array([
            (self.feature_types[names[j]] is int) if names[j] in self.feature_types
            else bool(np.all(num[:, i] == np.round(num[:, i])))
            for i, j in enumerate(self.num_idx_)], dtype=bool)
        return self

    # ------------------------------------------------------------------------------------------------ layout
    @property
    def n_features(self) -> int:
        check_is_fitted(self, "mean_")
        return len(self.feature_names_)

    @property
    def n_num(self) -> int:
        check_is_fitted(self, "mean_")
        return len(self.num_idx_)

    @property
    def model_dim(self) -> int:
        """Width of the model space: ``n_num + sum(K_j)``."""
        return self.n_num + sum(self.cat_sizes_)

    @property
    def head_dims(self) -> list[int]:
        """Output widths of the decoder heads: ``[n_num]`` (if any numerical feature) then each ``K_j``."""
        return ([self.n_num] if self.n_num else []) + list(self.cat_sizes_)

    @property
    def range_(self) -> np.ndarray:
        """Training range ``max - min`` per numerical feature (1 where constant), original units."""
        r = self.max_ - self.min_
        return np.where(r > 0, r, 1.0)

    # ------------------------------------------------------------------------------------------------ original <-> codes
    @staticmethod
    def _as_2d(X: Any, name: str) -> np.ndarray:
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        arr = np.asarray(X)
        if arr.ndim == 1:
            raise ValueError(error_message(name, "a 2-D array [N, F] (one row per instance)", arr,
                                           "for a single instance use X[None] or X.reshape(1, -1)"))
        if arr.ndim != 2:
            raise ValueError(error_message(name, "a 2-D array [N, F]", arr))
        return arr

    def to_codes(self, X: Any, name: str = "X") -> np.ndarray:
        """Original data -> float64 ``[N, F]`` codes; rejects wrong columns, NaN and unknown categories."""
        check_is_fitted(self, "mean_")
        F = len(self.feature_names_)
        if isinstance(X, pd.DataFrame):
            cols = [str(c) for c in X.columns]
            if cols != self.feature_names_:
                missing = [c for c in self.feature_names_ if c not in cols]
                extra = [c for c in cols if c not in self.feature_names_]
                raise ValueError(error_message(f"{name}.columns", f"{self.feature_names_}", cols,
                                               f"missing {missing}, unexpected {extra}" if missing or extra
                                               else "reorder the columns"))
            columns = [X.iloc[:, j].to_numpy() for j in range(F)]
            n = len(X)
        else:
            arr = self._as_2d(X, name)
            if arr.shape[1] != F:
                raise ValueError(error_message(name, f"{F} columns ({', '.join(self.feature_names_)})", arr))
            columns = [arr[:, j] for j in range(F)]
            n = arr.shape[0]
        out = np.empty((n, F), np.float64)
        for j, col in enumerate(columns):
            fname = self.feature_names_[j]
            if j in self.category_map_:
                out[:, j] = self._encode_cat(j, col, name)
            else:
                try:
                    vals = col.astype(np.float64)
                except (TypeError, ValueError) as exc:
                    bad = next((v for v in col if not _is_number(v)), col[0])
                    raise TypeError(error_message(f"{name}[{fname!r}]", "numbers (a numerical feature)", bad,
                                                  "add the feature to category_map if it is categorical")) from exc
                out[:, j] = vals
        bad = ~np.isfinite(out)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ValueError(f"{name}: expected finite values, got {int(bad.sum())} NaN/inf entries (first at row "
                             f"{r}, feature {self.feature_names_[c]!r}); impute or drop them first")
        return out

    def _encode_cat(self, j: int, col: np.ndarray, name: str) -> np.ndarray:
        fname, cats = self.feature_names_[j], self.category_map_[j]
        if col.dtype.kind in "iu" or (col.dtype.kind == "f" and np.all(np.isfinite(col))
                                      and np.all(col == np.round(col))):
            codes = col.astype(np.float64)
            bad = (codes < 0) | (codes >= len(cats))
            if bad.any():
                raise ValueError(error_message(f"{name}[{fname!r}]", f"codes in [0, {len(cats)})",
                                               codes[bad][0], f"categories are {cats}"))
            return codes
        lookup = self._lookup[j]
        out = np.empty(len(col), np.float64)
        uniq, inv = np.unique(col.astype(object).astype(str), return_inverse=True)
        mapped = np.empty(len(uniq), np.float64)
        for u, value in enumerate(uniq):
            if value in lookup:
                mapped[u] = lookup[value]
            elif _is_int_string(value) and 0 <= int(float(value)) < len(cats):
                mapped[u] = int(float(value))
            else:
                if value in ("nan", "None"):
                    raise ValueError(f"{name}[{fname!r}]: expected no missing values, got {value}; impute them or "
                                     "add an explicit category for them")
                hint = suggest(value, cats)
                raise ValueError(error_message(f"{name}[{fname!r}]", f"one of {cats}", value,
                                               hint or "add it to category_map"))
        out[:] = mapped[inv.reshape(-1)]
        return out

    def from_codes(self, A: np.ndarray | torch.Tensor) -> Any:
        """float64 codes ``[N, F]`` -> the original format seen at ``fit`` (array of the same dtype, or DataFrame)."""
        check_is_fitted(self, "mean_")
        if isinstance(A, torch.Tensor):
            A = A.detach().cpu().numpy()
        A = np.asarray(A, np.float64)
        if self.input_is_frame_:
            data = {}
            for j, fname in enumerate(self.feature_names_):
                data[fname] = self._decode_column(j, A[:, j])
            df = pd.DataFrame(data)
            for fname, dt in (self.frame_dtypes_ or {}).items():
                try:
                    if df[fname].dtype != dt:
                        df[fname] = df[fname].astype(dt)
                except (TypeError, ValueError):
                    pass
            return df
        dtype = self.input_dtype_
        if dtype is not None and dtype.kind in "iufb":
            if dtype.kind in "iub":
                return np.rint(A).astype(dtype)
            return A.astype(dtype)
        out = np.empty(A.shape, dtype=object)
        for j in range(A.shape[1]):
            out[:, j] = self._decode_column(j, A[:, j])
        return out

    def _decode_column(self, j: int, col: np.ndarray) -> np.ndarray:
        if j in self.category_map_:
            codes = np.rint(col).astype(np.int64)
            if self.cat_as_str_[j]:
                return np.asarray(self.category_map_[j], dtype=object)[codes]
            return codes
        i = self.num_idx_.index(j)
        return np.rint(col).astype(np.int64) if self.is_int_[i] else col

    # ------------------------------------------------------------------------------------------------ codes <-> model (torch)
    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (like.device, like.dtype)
        cache = self.__dict__.setdefault("_stat_cache", {})
        if key not in cache:
            cache[key] = (torch.as_tensor(self.mean_, dtype=like.dtype, device=like.device),
                          torch.as_tensor(self.std_, dtype=like.dtype, device=like.device))
        return cache[key]

    def _layout(self, device: torch.device) -> dict[str, torch.Tensor]:
        """Index tensors for vectorised categorical work (cached per device).

        ``offsets`` [n_cat]: first one-hot column of each categorical block; ``gather`` [n_cat * Kmax]: for a padded
        ``[n_cat, Kmax]`` layout, the one-hot column of each slot (``sum K`` = a padding column)."""
        cache = self.__dict__.setdefault("_layout_cache", {})
        if device not in cache:
            sizes = list(self.cat_sizes_)
            kmax = max(sizes) if sizes else 0
            offsets = np.cumsum([0] + sizes[:-1]) if sizes else np.zeros(0, int)
            total = int(sum(sizes))
            gather = np.full((len(sizes), kmax), total, np.int64)
            for c, (o, k) in enumerate(zip(offsets, sizes)):
                gather[c, :k] = o + np.arange(k)
            cache[device] = {"offsets": torch.as_tensor(offsets, dtype=torch.long, device=device),
                             "gather": torch.as_tensor(gather.reshape(-1), device=device),
                             "cat_idx": torch.as_tensor(self.cat_idx_, dtype=torch.long, device=device),
                             "num_idx": torch.as_tensor(self.num_idx_, dtype=torch.long, device=device),
                             "kmax": kmax, "total": total}
        return cache[device]

    def pad_categorical(self, blocks: torch.Tensor, fill: float) -> torch.Tensor:
        """Concatenated categorical columns ``[N, sum K]`` -> padded ``[N, n_cat, Kmax]`` (pads = ``fill``)."""
        lay = self._layout(blocks.device)
        ext = torch.cat([blocks, blocks.new_full((blocks.shape[0], 1), fill)], 1)  # [N, sum K + 1]
        return ext[:, lay["gather"]].view(blocks.shape[0], len(self.cat_sizes_), lay["kmax"])

    def codes_to_model(self, A: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """float64 codes ``[N, F]`` (tensor) -> model space ``[N, n_num + sum K]`` (``dtype``), same device."""
        lay = self._layout(A.device)
        out = torch.zeros(A.shape[0], self.model_dim, dtype=dtype, device=A.device)
        if self.num_idx_:
            mean, std = self._stats(A)
            out[:, :self.n_num] = (A[:, lay["num_idx"]] - mean) / std  # [N, n_num]
        if self.cat_idx_:
            cols = A[:, lay["cat_idx"]].long() + lay["offsets"] + self.n_num  # [N, n_cat] one-hot columns
            out.scatter_(1, cols, 1.0)
        return out

    def split_model(self, Z: torch.Tensor) -> list[torch.Tensor]:
        """Model space ``[N, D]`` -> list of heads ``[[N, n_num]] + [[N, K_j] ...]`` (views)."""
        return list(torch.split(Z, self.head_dims, dim=1))

    def model_to_codes(self, Z: torch.Tensor | Sequence[torch.Tensor], round_int: bool = True) -> torch.Tensor:
        """Model space (one tensor or the decoder's list of heads) -> float64 codes ``[N, F]``.

        Numerical features are de-standardised (and rounded where integer-valued); categorical heads (one-hot or
        logits) become their argmax code.
        """
        heads = self.split_model(Z) if isinstance(Z, torch.Tensor) else list(Z)
        if len(heads) != len(self.head_dims):
            raise ValueError(error_message("Z", f"{len(self.head_dims)} heads of widths {self.head_dims}",
                                           [tuple(h.shape) for h in heads]))
        n = heads[0].shape[0]
        ref = heads[0]
        A = torch.empty(n, len(self.feature_names_), dtype=torch.float64, device=ref.device)
        h = 0
        if self.num_idx_:
            mean, std = self._stats(A)
            num = heads[0].to(torch.float64) * std + mean  # [N, n_num]
            if round_int and self.is_int_.any():
                mask = self._int_mask(A)
                num = torch.where(mask, torch.round(num), num)
            A[:, self.num_idx_] = num
            h = 1
        if self.cat_idx_:
            logits = self.pad_categorical(torch.cat(list(heads[h:]), 1), float("-inf"))  # [N, n_cat, Kmax]
            A[:, self._layout(A.device)["cat_idx"]] = logits.argmax(-1).to(torch.float64)
        return A

    def _int_mask(self, like: torch.Tensor) -> torch.Tensor:
        cache = self.__dict__.setdefault("_int_cache", {})
        if like.device not in cache:
            cache[like.device] = torch.as_tensor(self.is_int_, device=like.device)
        return cache[like.device]

    # ------------------------------------------------------------------------------------------------ public pair
    def transform(self, X: Any, dtype: Any = np.float32) -> np.ndarray:
        """Original data -> model space, numpy ``[N, n_num + sum K]`` (float32; ``dtype=np.float64`` keeps float
        features exact to double precision)."""
        A = torch.from_numpy(self.to_codes(X))
        return self.codes_to_model(A, dtype=torch.from_numpy(np.zeros(0, dtype)).dtype).numpy()

    def fit_transform(self, X: Any) -> np.ndarray:
        return self.fit(X).transform(X)

    def inverse_transform(self, Z: Any) -> Any:
        """Model space (array, tensor, or list of decoder heads) -> original format (exact for codes and integers)."""
        check_is_fitted(self, "mean_")
        if isinstance(Z, (list, tuple)):
            Zt: Any = [torch.as_tensor(np.asarray(z) if not isinstance(z, torch.Tensor) else z) for z in Z]
        else:
            Zt = Z if isinstance(Z, torch.Tensor) else torch.from_numpy(np.asarray(Z))
            if Zt.ndim != 2 or Zt.shape[1] != self.model_dim:
                raise ValueError(error_message("Z", f"a [N, {self.model_dim}] model-space array", Zt))
        for z in (Zt if isinstance(Zt, list) else [Zt]):
            if z.is_floating_point() and not torch.isfinite(z).all():
                raise ValueError(error_message("Z", "finite model-space values", z, "NaN/inf has no original value; "
                                               "check the model that produced Z"))
        return self.from_codes(self.model_to_codes(Zt))

    # convenience for callers that want alibi-style callables
    __call__ = transform

    def to_config(self) -> dict:
        """JSON-serialisable state (for save/load without pickle)."""
        check_is_fitted(self, "mean_")
        return {"feature_names": self.feature_names_, "category_map": {str(k): v for k, v in
                                                                        self.category_map_.items()},
                "mean": self.mean_.tolist(), "std": self.std_.tolist(), "min": self.min_.tolist(),
                "max": self.max_.tolist(), "is_int": self.is_int_.tolist(),
                "input_is_frame": self.input_is_frame_,
                "frame_dtypes": {k: str(v) for k, v in (self.frame_dtypes_ or {}).items()},
                "input_dtype": None if self.input_dtype_ is None else str(self.input_dtype_),
                "cat_as_str": {str(k): v for k, v in self.cat_as_str_.items()}}

    @classmethod
    def from_config(cls, cfg: dict) -> "TabularPreprocessor":
        cmap = {int(k): list(v) for k, v in cfg["category_map"].items()}
        self = cls(cfg["feature_names"], cmap)
        self.feature_names_ = list(cfg["feature_names"])
        self.category_map_ = cmap
        self.cat_idx_ = list(cmap)
        self.num_idx_ = [j for j in range(len(self.feature_names_)) if j not in cmap]
        self.cat_sizes_ = [len(cmap[j]) for j in self.cat_idx_]
        self._lookup = {j: {c: k for k, c in enumerate(cmap[j])} for j in self.cat_idx_}
        self.mean_, self.std_ = np.asarray(cfg["mean"], np.float64), np.asarray(cfg["std"], np.float64)
        self.min_, self.max_ = np.asarray(cfg["min"], np.float64), np.asarray(cfg["max"], np.float64)
        self.is_int_ = np.asarray(cfg["is_int"], bool)
        self.input_is_frame_ = cfg["input_is_frame"]
        self.frame_dtypes_ = {k: np.dtype(v) if v not in ("category", "string", "str") else v
                              for k, v in cfg["frame_dtypes"].items()} if self.input_is_frame_ else None
        self.input_dtype_ = None if cfg["input_dtype"] is None else np.dtype(cfg["input_dtype"])
        self.cat_as_str_ = {int(k): v for k, v in cfg["cat_as_str"].items()}
        return self


def _is_number(v: Any) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def _is_int_string(v: str) -> bool:
    try:
        f = float(v)
    except ValueError:
        return False
    return np.isfinite(f) and f == int(f)
