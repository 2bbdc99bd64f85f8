"""Write the format-1 saves that tests/counterfactual/test_persistence.py loads (kept small: ~100 kB in all).

Produced at commit 8e95249 (the last version writing format 1) with

    PYTHONPATH=. python tests/counterfactual/saved_v1/make_v1_saves.py

Each save comes with ``*_expected.safetensors``: inputs, targets and what that version explained for them.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent)]

from conftest import _train_digits_models  # noqa: E402
from test_tabular import Black, data, make  # noqa: E402

from xrl.counterfactual import CounterfactualRL  # noqa: E402
from xrl.datasets import load_digits_images  # noqa: E402
from xrl.io import save_tensors  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    X, y = load_digits_images()
    clf, enc, dec = _train_digits_models(X, y)
    cf = CounterfactualRL(clf, enc, dec, 0.5, 0.0, latent_dim=8, train_steps=40, batch_size=16, seed=3,
                          actor_hidden_dim=16, critic_hidden_dim=16, replay_buffer_size=50, progress=False).fit(X)
    cf.save(HERE / "v1_image")
    targets = np.arange(20) % 10
    exp = cf.explain(X[:20], targets)
    save_tensors(HERE / "v1_image_expected.safetensors",
                 {"X": torch.from_numpy(X[:20]), "targets": torch.from_numpy(targets),
                  "X_cf": torch.from_numpy(exp.data["cf"]["X"]), "cf_class": torch.from_numpy(exp.data["cf"]["class"]),
                  **{f"classifier.{k}": v for k, v in clf.state_dict().items()}})
    Xt, tab = make(train_steps=30)
    tab.fit(Xt)
    tab.save(HERE / "v1_tabular", training_state=False)
    Xe = data(12, seed=11)
    exp = tab.explain(Xe, Y_t=np.array([1]), C={"Age": [0, 5]}, retries=0)
    A = tab.preprocessor.to_codes(exp.data["cf"]["X"])
    save_tensors(HERE / "v1_tabular_expected.safetensors",
                 {"X": torch.from_numpy(tab.preprocessor.to_codes(Xe)), "cf_codes": torch.from_numpy(A),
                  "cf_class": torch.from_numpy(exp.data["cf"]["class"])})
    assert Black  # the black box the tabular save was trained with


if __name__ == "__main__":
    main()
