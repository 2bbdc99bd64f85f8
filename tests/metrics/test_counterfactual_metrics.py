from __future__ import annotations

import numpy as np
import pytest
import torch

from xrl.metrics import counterfactual_report, l0_distance, l1_distance, reconstruction_error, validity, ynn


def test_distances_and_validity_by_hand():
    X = np.zeros((2, 1, 2, 2), np.float32)
    X_cf = X.copy()
    X_cf[0, 0, 0, 0] = 0.5
    X_cf[1] = 1.0
    np.testing.assert_allclose(l1_distance(X, X_cf), [0.5, 4.0])
    np.testing.assert_array_equal(l0_distance(X, X_cf), [1, 4])
    assert validity([1, 2, 3], [1, 0, 3]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="X_cf: expected the shape of X"):
        l1_distance(X, X_cf[:1])
    with pytest.raises(ValueError, match="target: expected 3 labels"):
        validity([1, 2, 3], [1])


def test_ynn_counts_neighbours_of_the_same_class():
    ref = np.array([[0.0], [0.1], [0.2], [5.0], [5.1]], np.float32)
    y_ref = np.array([0, 0, 0, 1, 1])
    out = ynn(np.array([[0.05], [5.05]], np.float32), [0, 0], ref, y_ref, k=2)
    np.testing.assert_allclose(out, [1.0, 0.0])
    with pytest.raises(ValueError, match="k: expected at most"):
        ynn(ref, y_ref, ref, y_ref, k=9)
    with pytest.raises(ValueError, match="X_ref: expected 1 features"):
        ynn(ref, y_ref, np.zeros((5, 2), np.float32), y_ref)


def test_reconstruction_error_and_report():
    ae = torch.nn.Identity()
    ae.register_parameter("p", torch.nn.Parameter(torch.zeros(1)))
    X = np.random.default_rng(0).random((6, 1, 2, 2)).astype(np.float32)
    np.testing.assert_allclose(reconstruction_error(ae, X), 0.0)
    np.testing.assert_allclose(reconstruction_error(lambda x: x * 0, X), (X ** 2).reshape(6, -1).mean(1), rtol=1e-6)
    rep = counterfactual_report(X, X, np.arange(6) % 2, np.zeros(6), autoencoder=ae, X_ref=X,
                                y_ref=np.arange(6) % 2, k=1)
    assert rep["validity"] == 0.5 and rep["l1_mean"] == 0.0 and rep["ynn_k1_mean"] == 1.0
    with pytest.raises(ValueError, match="autoencoder: expected to reconstruct"):
        reconstruction_error(lambda x: x[:, :, :1], X)
