"""Saves written by xrl's format 1 (commit 8e95249, before the core rebuild) still load and explain as they did."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import DigitsClassifier, DigitsDecoder, DigitsEncoder
from test_tabular import Black

from xrl.counterfactual import CounterfactualRL, CounterfactualRLTabular
from xrl.io import load_tensors, strip_prefix

SAVED = Path(__file__).parent / "saved_v1"


def test_a_format_1_image_save_loads_and_explains_as_it_did(digits, tmp_path):
    X, _ = digits
    expected = load_tensors(SAVED / "v1_image_expected.safetensors")
    clf = DigitsClassifier()
    clf.load_state_dict(strip_prefix("classifier", expected))
    clf.eval()
    path = tmp_path / "v1_image"
    shutil.copytree(SAVED / "v1_image", path)
    with pytest.warns(UserWarning, match="format-1 save; its training state .* is not restored.*from step 40"):
        cf = CounterfactualRL.load(path, clf, encoder=DigitsEncoder(), decoder=DigitsDecoder())
    assert cf._step == 40 and cf.y_dim == 10 and cf.config.all_targets and cf.config.batch_size == 16
    exp = cf.explain(expected["X"].numpy(), expected["targets"].numpy())
    np.testing.assert_allclose(exp.data["cf"]["X"], expected["X_cf"].numpy(), atol=1e-5)
    np.testing.assert_array_equal(exp.data["cf"]["class"], expected["cf_class"].numpy())
    cf.params["train_steps"] = 60  # training continues (with fresh optimizers and buffer), then saves as format 2
    cf.fit(X)
    cf.save(path)
    again = CounterfactualRL.load(path, clf, encoder=DigitsEncoder(), decoder=DigitsDecoder())
    assert again._step == 60 and again._training is not None


def test_a_format_1_tabular_save_loads_and_explains_as_it_did():
    expected = load_tensors(SAVED / "v1_tabular_expected.safetensors")
    cf = CounterfactualRLTabular.load(SAVED / "v1_tabular", Black())
    assert cf.constraints.immutable_features == ["Sex"] and cf.constraints.ranges == {"Age": [0.0, 1.0]}
    X = cf.preprocessor.from_codes(expected["X"])
    exp = cf.explain(X, Y_t=np.array([1]), C={"Age": [0, 5]}, retries=0)
    codes, old = cf.preprocessor.to_codes(exp.data["cf"]["X"]), expected["cf_codes"].numpy()
    np.testing.assert_array_equal(codes[:, [0, 1, 3]], old[:, [0, 1, 3]])  # integers and categories: exact
    np.testing.assert_allclose(codes[:, 2], old[:, 2], rtol=1e-6)  # float32 decoder output, then float64 units
    np.testing.assert_array_equal(exp.data["cf"]["class"], expected["cf_class"].numpy())
