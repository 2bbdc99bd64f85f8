"""Data spaces: how instances become what the encoder reads, and counterfactuals what the black box reads. The DDPG
loop and the explainers use a space only through the methods :class:`ImageSpace` and :class:`TabularSpace` share."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np
import torch

from .._validation import as_float_array, error_message
from .conditioning import TabularConstraints
from .config import generate_empty_condition, identity_function
from .losses import l1_sparsity, tabular_sparsity
from .blackbox import call_user, to_numpy


@dataclasses.dataclass
class Rows:
    """Instances as the explainer holds them: ``model`` ``[B, ...]`` float32 (what the encoder reads and the sparsity
    loss compares with) and, for tabular data, the exact original ``codes`` ``[B, F]`` float64 beside them."""

    model: torch.Tensor
    codes: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.model)

    def __getitem__(self, idx: Any) -> "Rows":
        return Rows(self.model[idx], None if self.codes is None else self.codes[idx])


def _with_rows(X: np.ndarray) -> np.ndarray:
    if len(X) == 0:
        raise ValueError(error_message("X", "at least one row", X, "pass the instances to explain as [N, ...], N >= 1"))
    return X


class ImageSpace:
    """alibi's generic pipeline for data the autoencoder reads as one tensor (images, flat vectors):
    ``encoder_preprocessor``, ``postprocessing_funcs``, ``decoder_inv_preprocessor``, ``conditional_func``, read from
    the explainer's ``components`` at each call."""

    label_rows: int | None = None  # black-box rows per call: None = the batch size

    def __init__(self, components: dict[str, Any], device: torch.device) -> None:
        self.c, self.device = components, device

    def check(self, X: Any, x_shape: tuple[int, ...] | None = None) -> np.ndarray:
        X = _with_rows(np.ascontiguousarray(as_float_array("X", X, ndim_min=2)))  # negative strides included
        if x_shape is not None and tuple(X.shape[1:]) != tuple(x_shape):
            raise ValueError(f"X: expected rows shaped {tuple(x_shape)} (as in training), got {tuple(X.shape[1:])}")
        return X

    def rows(self, X: np.ndarray) -> Rows:
        f = self.c["encoder_preprocessor"]
        M = X if f is identity_function else as_float_array("encoder_preprocessor(X)", to_numpy(f(X)), ndim_min=2)
        if len(M) != len(X):
            raise ValueError(f"encoder_preprocessor: returned {len(M)} rows for {len(X)} input rows")
        return Rows(torch.from_numpy(M).to(self.device))

    def condition(self, rows: Rows, generator: torch.Generator) -> torch.Tensor | None:
        f = self.c["conditional_func"]
        C = None if f is generate_empty_condition else call_user(f, rows.model)
        return None if C is None else torch.as_tensor(C, dtype=torch.float32, device=self.device).reshape(len(rows), -1)

    def explain_condition(self, C: Any, rows: Rows, cond_dim: int) -> torch.Tensor | None:
        if (C is None) != (cond_dim == 0):
            raise ValueError(f"C: the explainer was trained with conditioning ({cond_dim} values per row); pass a "
                             "condition array C" if cond_dim else "C: the explainer was trained without conditioning "
                             "(conditional_func returned None); pass C=None")
        if C is None:
            return None
        C = as_float_array("C", C, ndim_min=1)
        C = C[None] if C.ndim == 1 else C
        if C.ndim != 2 or C.shape[1] != cond_dim or C.shape[0] not in (1, len(rows)):
            raise ValueError(error_message("C", f"a condition array [1 or {len(rows)}, {cond_dim}]", C))
        return torch.from_numpy(C).to(self.device).expand(len(rows), -1)

    def counterfactual(self, decoded: Any, rows: Rows, C: torch.Tensor | None) -> Any:
        for f in self.c["postprocessing_funcs"]:
            decoded = call_user(f, decoded, rows.model, C)
        return decoded

    def predictor_input(self, X_cf: Any) -> Any:
        inv = self.c["decoder_inv_preprocessor"]
        return X_cf if inv is identity_function else call_user(inv, X_cf)

    def black_box_input(self, X: Any, start: int, stop: int) -> Any:
        return X[start:stop]

    def encoder_input(self, X_cf: Any) -> torch.Tensor:
        return torch.as_tensor(X_cf, dtype=torch.float32, device=self.device)

    def check_decoded(self, out: Any, rows: Rows) -> None:
        if not isinstance(out, torch.Tensor) or out.shape[1:] != rows.model.shape[1:]:
            raise ValueError(f"decoder: outputs shape {tuple(getattr(out, 'shape', ())[1:])} per row but the encoder "
                             f"reads {tuple(rows.model.shape[1:])}; the decoder must reconstruct the encoder's input")

    def sparsity(self, decoded: torch.Tensor, rows: Rows, weight: torch.Tensor | None) -> dict[str, torch.Tensor]:
        return l1_sparsity(decoded, rows.model, weight)

    @staticmethod
    def join(parts: list[Any]) -> Any:
        return torch.cat(parts) if isinstance(parts[0], torch.Tensor) else np.concatenate(parts)

    def output(self, X: Any) -> Any:
        return to_numpy(X)


class TabularSpace:
    """Mixed numerical/categorical rows: model space = the preprocessor's standardised + one-hot layout; every row's
    exact original codes travel beside it, so conditions, projection and the black box see exact values."""

    label_rows: int | None = 10_000  # a black box such as a random forest costs mostly per call

    def __init__(self, constraints: TabularConstraints, conditional: bool, weight_num: float, weight_cat: float,
                 device: torch.device) -> None:
        self.constraints, self.pre, self.device = constraints, constraints.pre, device
        self.conditional, self.weight_num, self.weight_cat = conditional, weight_num, weight_cat

    def check(self, X: Any, x_shape: tuple[int, ...] | None = None) -> np.ndarray:
        return _with_rows(self.pre.to_codes(X, "X"))

    def rows(self, A: Any) -> Rows:
        A = torch.as_tensor(A, device=self.device)
        return Rows(self.pre.codes_to_model(A), A)

    def condition(self, rows: Rows, generator: torch.Generator) -> torch.Tensor | None:
        return self.constraints.random_condition(rows.codes, generator) if self.conditional else None

    def explain_condition(self, C: Any, rows: Rows, cond_dim: int) -> torch.Tensor | None:
        """None or ``{}``: immutables and ranges only (alibi's behaviour); dicts in original units; raw arrays."""
        empty = C is None or (isinstance(C, (list, tuple, Mapping)) and len(C) == 0)
        if not self.conditional:
            if not empty:
                raise ValueError("C: the explainer was trained without conditioning (conditional=False), so it cannot "
                                 "follow explain-time conditions; pass C=None, or build it with conditional=True")
            return None
        A = rows.codes
        if empty or isinstance(C, Mapping) or (isinstance(C, (list, tuple)) and all(isinstance(c, Mapping) for c in C)):
            return self.constraints.condition_from_dicts(A, {} if empty else C)
        Ct = torch.as_tensor(np.asarray(to_numpy(C), dtype=np.float64), device=A.device)
        Ct = Ct[None] if Ct.ndim == 1 else Ct
        Ct = Ct.expand(len(A), -1) if Ct.ndim == 2 and Ct.shape[0] == 1 else Ct
        self.constraints.check_condition(Ct, A)
        return Ct

    def counterfactual(self, heads: Any, rows: Rows, C: torch.Tensor | None) -> Rows:
        A_cf = self.constraints.project(heads, rows.codes, self.constraints.default_condition(rows.codes)
                                        if C is None else C)
        return Rows(self.pre.codes_to_model(A_cf), A_cf)

    def predictor_input(self, X_cf: Rows) -> Rows:
        return X_cf

    def black_box_input(self, X: Rows | Any, start: int, stop: int) -> Any:
        return self.pre.from_codes((X.codes if isinstance(X, Rows) else X)[start:stop])

    def encoder_input(self, X_cf: Rows) -> torch.Tensor:
        return X_cf.model

    def check_decoded(self, heads: Any, rows: Rows) -> None:
        if not isinstance(heads, (list, tuple)) or [h.shape[1] for h in heads] != self.pre.head_dims:
            got = [tuple(h.shape) for h in heads] if isinstance(heads, (list, tuple)) else tuple(heads.shape)
            raise ValueError(error_message("decoder", f"a list of heads of widths {self.pre.head_dims} (numerical "
                                           "first, then one per categorical feature)", got,
                                           "build it with TabularDecoder(latent_dim, hidden, pre.head_dims)"))

    def sparsity(self, heads: Any, rows: Rows, weight: torch.Tensor | None) -> dict[str, torch.Tensor]:
        return tabular_sparsity(list(heads), rows.model, self.pre.n_num, self.pre.pad_categorical, self.weight_num,
                                self.weight_cat, weight)

    @staticmethod
    def join(parts: list[Rows]) -> Rows:
        return Rows(torch.cat([p.model for p in parts]), torch.cat([p.codes for p in parts]))

    def output(self, X: Rows) -> Any:
        return self.pre.from_codes(X.codes)
