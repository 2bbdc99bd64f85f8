"""Ready-made CFRL training callbacks that need no account or network: CSV/JSONL metric logs and TensorBoard.

Each logs, every ``every`` steps: the step, the losses and the mean reward of the sampled batch (``R_tilde``, so no
extra black-box call). The seed's W&B callbacks (reward / images / losses) map onto these: pass ``log_images=True`` to
:class:`TensorBoardLogger` for the input / counterfactual / difference strip.
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


def _row(step: int, update: int, sample: dict[str, np.ndarray], losses: dict[str, float]) -> dict[str, Any]:
    row: dict[str, Any] = {"step": step, "update": update}
    row.update({k: float(v) for k, v in losses.items()})
    if sample.get("R_tilde") is not None:
        row["reward"] = float(np.mean(sample["R_tilde"]))
    return row


class _EveryN(Callback):
    def __init__(self, every: int = 100) -> None:
        check_scalar("every", every, int, low=1)
        self.every = every

    def _due(self, step: int, update: int) -> bool:
        return update == 0 and step % self.every == 0


class JSONLLogger(_EveryN):
    """Append one JSON object per logged step to ``path`` (``step, update, reward, critic_loss, actor_loss, ...``)."""

    def __init__(self, path: str | os.PathLike, every: int = 100) -> None:
        super().__init__(every)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, step, update, model, sample, losses) -> None:
        if self._due(step, update):
            with open(self.path, "a") as f:
                f.write(json.dumps(_row(step, update, sample, losses)) + "\n")


class CSVLogger(_EveryN):
    """Write a CSV of the logged steps (header from the first row)."""

    def __init__(self, path: str | os.PathLike, every: int = 100) -> None:
        super().__init__(every)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fields: list[str] | None = None

    def __call__(self, step, update, model, sample, losses) -> None:
        if not self._due(step, update):
            return
        row = _row(step, update, sample, losses)
        new = self._fields is None
        if new:
            self._fields = list(row)
        with open(self.path, "w" if new else "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self._fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)


class TensorBoardLogger(_EveryN):
    """Log scalars (``charts/reward``, ``losses/<name>``) and optionally an image strip (inputs over counterfactuals
    over differences, the seed's ``ImagesCallback``) to TensorBoard. Needs ``pip install "xrl[tensorboard]"``."""

    def __init__(self, log_dir: str | os.PathLike, every: int = 100, log_images: bool = False,
                 num_images: int = 10) -> None:
        super().__init__(every)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # pragma: no cover - depends on the optional extra
            raise ImportError('TensorBoardLogger needs tensorboard: pip install "xrl[tensorboard]"') from exc
        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.log_images, self.num_images = log_images, num_images

    def __call__(self, step, update, model, sample, losses) -> None:
        if not self._due(step, update):
            return
        row = _row(step, update, sample, losses)
        if "reward" in row:
            self.writer.add_scalar("charts/reward", row["reward"], step)
        for k, v in losses.items():
            self.writer.add_scalar(f"losses/{k}", float(v), step)
        if self.log_images and sample.get("X_cf") is not None and np.ndim(sample["X"]) == 4:
            k = self.num_images
            X, X_cf = sample["X"][:k], sample["X_cf"][:k]          # [k, C, H, W]
            strip = np.concatenate([np.concatenate(list(a), axis=-1) for a in (X, X_cf, np.abs(X - X_cf))], axis=-2)
            self.writer.add_image("samples", np.clip(strip, 0, 1), step, dataformats="CHW")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
