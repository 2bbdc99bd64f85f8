"""Tabular counterfactual metrics on hand-made rows."""
import numpy as np
import pytest

from xrl.metrics.tabular import (categorical_sparsity, count_diversity, immutability_violations,
                                 mean_pairwise_distance, numerical_sparsity, range_violations, tabular_cf_metrics,
                                 tabular_validity)
from xrl.preprocessing import TabularPreprocessor

X = np.array([[30.0, 0, 1], [40.0, 1, 0]])
X_CF = np.array([[33.0, 1, 1], [38.0, 1, 0]])


def test_basic_metrics():
    assert tabular_validity([1, 0, 1], [1, 1, 1]) == pytest.approx(2 / 3)
    assert tabular_validity(np.array([0.5, 2.0]), np.array([[0, 1], [0, 1]])) == 0.5  # regression intervals
    assert categorical_sparsity(X, X_CF, [1, 2]) == 0.25
    assert numerical_sparsity(X, X_CF, [0], np.array([2.0])) == pytest.approx((1.5 + 1.0) / 2)
    assert immutability_violations(X, X_CF, [2]) == 0 and immutability_violations(X, X_CF, [1]) == 1
    assert range_violations(X, X_CF, 0, low=0.0) == 1  # row 1 decreased
    with pytest.raises(ValueError, match="shaped like X"):
        categorical_sparsity(X, X_CF[:1], [1])


def test_diversity():
    Z = np.array([[0.0, 0.0], [3.0, 4.0]])
    assert mean_pairwise_distance(Z) == pytest.approx(5.0) and mean_pairwise_distance(Z[:1]) == 0.0
    assert count_diversity(np.array([[1, 2, 3], [1, 2, 4], [1, 5, 4]])) == pytest.approx((1 / 3 + 2 / 3 + 1 / 3) / 3)


def test_bundle():
    pre = TabularPreprocessor(["age", "job", "sex"], {1: ["a", "b"], 2: ["f", "m"]}).fit(X)
    m = tabular_cf_metrics(pre, X, X_CF, np.array([1, 0]), np.array([1, 1]), immutable_features=["sex"],
                           increase_only=["age"], Z_train=pre.transform(X), y_train=np.array([1, 0]), k=1)
    assert m["validity"] == 0.5 and m["immutability_violations"] == 0 and m["range_violations"] == 1
    assert m["categorical_sparsity"] == 0.25 and m["ynn_1"] == 1.0  # each counterfactual sits next to a row of its class
