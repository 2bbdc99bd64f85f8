"""Experience replay and exploration noise for CFRL's DDPG (alibi's ``ReplayBuffer`` / ``NormalActionNoise`` API)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .._validation import check_scalar

__all__ = ["ReplayBuffer", "NormalActionNoise"]


class NormalActionNoise:
    """Gaussian exploration noise ``mu + sigma * N(0, 1)``: ``noise(shape)`` returns numpy (alibi's API; from
    ``generator``, else numpy's global RNG), ``noise.sample(shape, device, generator)`` a tensor (torch generator)."""

    def __init__(self, mu: float, sigma: float, generator: np.random.Generator | None = None) -> None:
        check_scalar("sigma", sigma, low=0)
        self.mu, self.sigma, self.generator = float(mu), float(sigma), generator

    def __call__(self, shape: tuple[int, ...]) -> np.ndarray:
        draw = self.generator.standard_normal if self.generator is not None else np.random.standard_normal
        return self.mu + self.sigma * draw(shape)

    def sample(self, shape: Sequence[int], device: torch.device | str = "cpu",
               generator: torch.Generator | None = None) -> torch.Tensor:
        return self.mu + self.sigma * torch.randn(tuple(shape), device=device, generator=generator)

    def __repr__(self) -> str:
        return f"NormalActionNoise(mu={self.mu}, sigma={self.sigma})"


class ReplayBuffer:
    """Circular (FIFO) experience buffer of ``size`` batches.

    Storage is allocated at the first ``append`` from the batch's shapes, dtypes and device (numpy arrays or tensors),
    and ``sample`` returns one batch of the same size. Fields are keyword arguments (``X, Y_m, Y_t, Z, Z_cf_tilde, C,
    R_tilde`` as in alibi, or any others: CFRL stores the training rows' indices ``idx`` instead of copies of ``X``);
    ``None`` fields are not stored.
    """

    def __init__(self, size: int = 1000) -> None:
        check_scalar("size", size, int, low=1)
        self.size, self.idx, self.len, self.batch_size = int(size), 0, 0, 0  # idx: next slot, len: filled (batches)
        self.data: dict[str, Any] = {}

    def append(self, X: Any = None, Y_m: Any = None, Y_t: Any = None, Z: Any = None, Z_cf_tilde: Any = None,
               C: Any = None, R_tilde: Any = None, **kwargs: Any) -> None:
        fields = dict(X=X, Y_m=Y_m, Y_t=Y_t, Z=Z, Z_cf_tilde=Z_cf_tilde, C=C, R_tilde=R_tilde, **kwargs)
        fields = {k: v for k, v in fields.items() if v is not None}
        if not fields:
            raise ValueError("append: expected at least one array, got only None")
        n = len(next(iter(fields.values())))
        if not self.data:
            self.batch_size = n
            for k, v in fields.items():
                shape = (self.size * n, *v.shape[1:])
                self.data[k] = (torch.zeros(shape, dtype=v.dtype, device=v.device) if isinstance(v, torch.Tensor)
                                else np.zeros(shape, dtype=np.asarray(v).dtype))
        if n != self.batch_size or set(fields) != set(self.data):
            raise ValueError(f"append: expected the fields {sorted(self.data)} with {self.batch_size} rows each "
                             f"(fixed by the first append), got {sorted(fields)} with {n} rows")
        for k, v in fields.items():
            self.data[k][self.idx * n:(self.idx + 1) * n] = v
        self.idx, self.len = (self.idx + 1) % self.size, min(self.len + 1, self.size)

    def __len__(self) -> int:
        return self.len * self.batch_size

    def sample(self, generator: torch.Generator | np.random.Generator | None = None) -> dict[str, Any]:
        """One batch of rows drawn uniformly with replacement (tensor storage: from a ``torch.Generator``; numpy
        storage: from a ``np.random.Generator``, else numpy's global RNG as alibi)."""
        if self.len == 0:
            raise RuntimeError("sample: the replay buffer is empty; append experience first")
        high, first = self.len * self.batch_size, next(iter(self.data.values()))
        if isinstance(first, torch.Tensor):
            rows = torch.randint(0, high, (self.batch_size,), device=first.device,
                                 generator=generator if isinstance(generator, torch.Generator) else None)
        elif isinstance(generator, np.random.Generator):
            rows = generator.integers(0, high, self.batch_size)
        else:
            rows = np.random.randint(0, high, self.batch_size)
        return {k: v[rows] for k, v in self.data.items()}

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        """The filled part as tensors and the cursor, for saving (see :meth:`load_state`)."""
        return ({k: torch.as_tensor(v[:len(self)]) for k, v in self.data.items()},
                {"idx": self.idx, "len": self.len, "batch_size": self.batch_size})

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, int], device: torch.device) -> None:
        self.idx, self.len, self.batch_size = int(meta["idx"]), int(meta["len"]), int(meta["batch_size"])
        self.data = {k: torch.zeros((self.size * self.batch_size, *v.shape[1:]), dtype=v.dtype, device=device)
                     for k, v in tensors.items()}
        for k, v in tensors.items():
            self.data[k][:len(v)] = v.to(device)
