"""Ready-made CFRL training callbacks that need no account or network: CSV/JSONL metric logs and TensorBoard. Each
logs, every ``every`` steps, the step, the losses and the mean reward of the sampled batch (``R_tilde``: no extra
black-box call); they replace the seed's W&B callbacks (``TensorBoardLogger(log_images=True)`` for the images).
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import check_scalar
from .cfrl import Callback


class _EveryN(Callback):
    def __init__(self, path: str | os.PathLike | None = None, every: int = 100) -> None:
        check_scalar("every", every, int, low=1)
        self.every, self.path = every, None if path is None else Path(path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, step: int, update: int, model: Any, sample: dict, losses: dict[str, float]) -> None:
        if update == 0 and step % self.every == 0:
            row = {"step": step, "update": update, **{k: float(v) for k, v in losses.items()},
                   "reward": float(np.mean(sample["R_tilde"]))}
            self.log(row, sample)

    def log(self, row: dict[str, Any], sample: dict) -> None:
        raise NotImplementedError


class JSONLLogger(_EveryN):
    """Append one JSON object per logged step to ``path`` (``step, update, reward, critic_loss, actor_loss, ...``)."""

    def log(self, row: dict[str, Any], sample: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


class CSVLogger(_EveryN):
    """Write a CSV of the logged steps (header from the first row)."""

    _fields: list[str] | None = None

    def log(self, row: dict[str, Any], sample: dict) -> None:
        new, self._fields = self._fields is None, self._fields or list(row)
        with open(self.path, "w" if new else "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)


class TensorBoardLogger(_EveryN):
    """Log scalars (``charts/reward``, ``losses/<name>``) and optionally an image strip (inputs over counterfactuals
    over differences, the seed's ``ImagesCallback``) to TensorBoard. Needs ``pip install "xrl[tensorboard]"``."""

    def __init__(self, log_dir: str | os.PathLike, every: int = 100, log_images: bool = False,
                 num_images: int = 10) -> None:
        super().__init__(None, every)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # pragma: no cover - depends on the optional extra
            raise ImportError('TensorBoardLogger needs tensorboard: pip install "xrl[tensorboard]"') from exc
        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.log_images, self.num_images = log_images, num_images

    def log(self, row: dict[str, Any], sample: dict) -> None:
        for k, v in row.items():
            if k not in ("step", "update"):
                self.writer.add_scalar("charts/reward" if k == "reward" else f"losses/{k}", v, row["step"])
        if self.log_images and np.ndim(sample["X"]) == 4:
            X, X_cf = sample["X"][:self.num_images], sample["X_cf"][:self.num_images]  # [k, C, H, W]
            strip = np.concatenate([np.concatenate(list(a), axis=-1) for a in (X, X_cf, np.abs(X - X_cf))], axis=-2)
            self.writer.add_image("samples", np.clip(strip, 0, 1), row["step"], dataformats="CHW")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
