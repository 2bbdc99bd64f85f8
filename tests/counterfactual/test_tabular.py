"""CounterfactualRLTabular on tiny mixed data: constraints never violated, formats, regression, errors, save/load."""
import functools

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xrl.counterfactual.tabular import DEFAULT_RETRIES, CounterfactualRLTabular
from xrl.models.tabular import HeAE, HeAETrainConfig, TabularDecoder, TabularEncoder, train_heae
from xrl.preprocessing import TabularPreprocessor

NAMES = ["Age", "Job", "Hours", "Sex"]
CMAP = {"Job": ["clerk", "manager", "nurse"], "Sex": ["F", "M"]}
SMALL = dict(train_steps=40, batch_size=16, actor_hidden_dim=16, critic_hidden_dim=16, exploration_steps=5,
             update_after=2, replay_buffer_size=20, progress=False)


def data(n=160, seed=0):
    rng = np.random.default_rng(seed)
    X = np.empty((n, 4), dtype=object)
    X[:, 0] = rng.integers(18, 70, n)
    X[:, 1] = rng.choice(CMAP["Job"], n)
    X[:, 2] = np.round(rng.uniform(5, 60, n), 1)
    X[:, 3] = rng.choice(CMAP["Sex"], n)
    return X


class Black:
    """A fixed black box on the original format: score from Age, Job and Hours."""

    def __init__(self, regression=False):
        self.regression = regression

    def score(self, X):
        X = X.to_numpy() if isinstance(X, pd.DataFrame) else X
        return 0.05 * (X[:, 0].astype(float) - 40) + (X[:, 1] == "manager") + 0.02 * (X[:, 2].astype(float) - 30)

    def __call__(self, X):
        s = self.score(X)
        if self.regression:
            return s.astype(np.float32)
        p = 1 / (1 + np.exp(-s))
        return np.stack([1 - p, p], 1)


@functools.lru_cache(maxsize=None)
def autoencoder(frame=False):
    X = data()
    if frame:
        X = pd.DataFrame(X, columns=NAMES).astype({"Age": "int64", "Hours": "float64"})
    pre = TabularPreprocessor(category_map=CMAP, feature_names=None if frame else NAMES).fit(X)
    torch.manual_seed(0)
    ae = HeAE(TabularEncoder(pre.model_dim, 16, 3), TabularDecoder(3, 16, pre.head_dims))
    train_heae(ae, pre.transform(X), pre.n_num, pre.cat_sizes_, HeAETrainConfig(epochs=5, batch_size=32,
                                                                                log_every=0))
    return X, pre, ae


def make(regression=False, conditional=True, frame=False, **kw):
    X, pre, ae = autoencoder(frame)
    params = dict(SMALL)
    params.update(kw)
    return X, CounterfactualRLTabular(Black(regression), ae.encoder, ae.decoder, 3, pre, pre.inverse_transform,
                                      0.5, 0.5, immutable_features=["Sex"], ranges={"Age": [0, 1]},
                                      conditional=conditional, **params)


@functools.lru_cache(maxsize=None)
def fitted():
    X, cf = make()
    return X, cf.fit(X)


def check_constraints(X, X_cf, cond=None):
    X, X_cf = np.asarray(X, dtype=object), np.asarray(X_cf, dtype=object)
    assert (X_cf[:, 3] == X[:, 3]).all(), "immutable Sex changed"
    age, age_cf = X[:, 0].astype(int), X_cf[:, 0].astype(float)
    assert (age_cf >= age).all(), "Age decreased"
    assert (age_cf == np.round(age_cf)).all(), "Age not an integer"
    if cond:
        if "Age" in cond:
            assert (age_cf - age <= cond["Age"][1] + 1e-9).all()
        if "Hours" in cond:
            d = X_cf[:, 2].astype(float) - X[:, 2].astype(float)
            assert (d >= cond["Hours"][0] - 1e-9).all() and (d <= cond["Hours"][1] + 1e-9).all()
        if "Job" in cond:
            allowed = set(cond["Job"])
            assert all(j_cf == j or j_cf in allowed for j, j_cf in zip(X[:, 1], X_cf[:, 1]))


def test_fit_explain_respects_constraints_and_layout():
    X, cf = fitted()
    Xe = data(50, seed=1)
    exp = cf.explain(Xe, Y_t=np.array([1]), C={}, batch_size=16)
    X_cf = exp.data["cf"]["X"]
    assert X_cf.shape == Xe.shape and X_cf.dtype == object
    assert exp.data["orig"]["class"].shape == (50, 1) and exp.data["target"].shape == (50, 1)
    assert exp.data["valid"].shape == (50,) and exp.data["condition"].shape == (50, cf.constraints.cond_dim)
    check_constraints(Xe, X_cf)
    cond = {"Age": [0, 3], "Hours": [-2.5, 4], "Job": ["nurse"]}
    exp = cf.explain(Xe, Y_t=1 - exp.data["orig"]["class"][:, 0], C=cond)
    check_constraints(Xe, exp.data["cf"]["X"], cond)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), age_hi=st.integers(0, 25), h_lo=st.floats(-30, 0), h_hi=st.floats(0, 30),
       jobs=st.lists(st.sampled_from(CMAP["Job"]), max_size=3), target=st.integers(0, 1),
       use=st.sets(st.sampled_from(["Age", "Hours", "Job"])))
def test_property_explain_never_violates_constraints(seed, age_hi, h_lo, h_hi, jobs, target, use):
    _, cf = fitted()
    Xe = data(24, seed=seed)
    cond = {k: v for k, v in {"Age": [0, age_hi], "Hours": [h_lo, h_hi], "Job": jobs}.items() if k in use}
    exp = cf.explain(Xe, Y_t=np.array([target]), C=cond, batch_size=10)
    check_constraints(Xe, exp.data["cf"]["X"], cond)


def test_dataframe_in_dataframe_out():
    X, cf = make(frame=True)
    cf.fit(X)
    exp = cf.explain(X.iloc[:20], Y_t=np.array([0]), C={})
    out = exp.data["cf"]["X"]
    assert isinstance(out, pd.DataFrame) and list(out.columns) == NAMES and out["Age"].dtype == np.int64
    check_constraints(X.iloc[:20].to_numpy(), out.to_numpy())


def test_regression_interval_targets():
    X, cf = make(regression=True)
    cf.fit(X)
    assert cf.regression and cf.y_dim == 1
    Xe = data(30, seed=2)
    exp = cf.explain(Xe, Y_t=np.array([[0.5, 1.5]]), C={})
    assert exp.data["target"].shape == (30, 2) and exp.data["cf"]["class"].shape == (30, 1)
    y_cf = exp.data["cf"]["class"][:, 0]
    np.testing.assert_array_equal(exp.data["valid"], (y_cf >= 0.5) & (y_cf <= 1.5))
    check_constraints(Xe, exp.data["cf"]["X"])
    with pytest.raises(ValueError, match="low <= high"):
        cf.explain(Xe, Y_t=np.array([[2.0, 1.0]]), C={})
    with pytest.raises(ValueError, match="target intervals"):
        cf.explain(Xe, Y_t=np.array([1.0, 2.0, 3.0]), C={})


def test_diversity_returns_distinct_valid_counterfactuals():
    X, cf = fitted()
    x = data(1, seed=3)
    exp = cf.explain(x, Y_t=np.array([1]), C={}, diversity=True, num_samples=5, patience=10, batch_size=32)
    cfs = exp.data["cf"]["X"]
    assert len(cfs) <= 5 and exp.data["valid"].all()
    assert len({tuple(r) for r in cfs}) == len(cfs)
    if len(cfs):
        check_constraints(np.repeat(x, len(cfs), 0), cfs)
    with pytest.raises(ValueError, match="exactly one row"):
        cf.explain(data(2), Y_t=np.array([1]), C={}, diversity=True)


def test_retries_fix_missed_rows_and_keep_the_rest():
    # a regression explainer with a narrow target interval misses rows that a perturbed latent can still reach
    X, cf = make(regression=True)
    cf.fit(X)
    Xe = data(120, seed=4)
    T = np.array([[0.5, 1.5]])
    plain = cf.explain(Xe, Y_t=T, C={}, retries=0)
    fixed = cf.explain(Xe, Y_t=T, C={}, retries=16)
    valid0, valid1 = plain.data["valid"], fixed.data["valid"]
    assert (~valid0).any()
    assert valid1[valid0].all() and valid1.sum() > valid0.sum()
    assert (fixed.data["cf"]["X"][valid0] == plain.data["cf"]["X"][valid0]).all()  # valid rows untouched
    y_cf = fixed.data["cf"]["class"][:, 0]
    np.testing.assert_array_equal(valid1, (y_cf >= 0.5) & (y_cf <= 1.5))
    check_constraints(Xe, fixed.data["cf"]["X"])
    again = cf.explain(Xe, Y_t=T, C={})  # seeded; the default is DEFAULT_RETRIES = 16
    assert DEFAULT_RETRIES == 16 and (again.data["cf"]["X"] == fixed.data["cf"]["X"]).all()
    with pytest.raises(ValueError, match="retries"):
        cf.explain(Xe, Y_t=T, C={}, retries=-1)
    with pytest.raises(ValueError, match="retries"):
        cf.explain(Xe[:1], Y_t=T, C={}, diversity=True, retries=3)


def test_save_load_round_trip(tmp_path):
    X, cf = fitted()
    Xe = data(20, seed=4)
    cond = {"Age": [0, 5]}
    before = cf.explain(Xe, Y_t=np.array([1]), C=cond).data["cf"]["X"]
    cf.save(tmp_path / "cf")
    cf2 = CounterfactualRLTabular.load(tmp_path / "cf", Black())
    after = cf2.explain(Xe, Y_t=np.array([1]), C=cond).data["cf"]["X"]
    assert (before == after).all()
    assert cf2.constraints.immutable_features == ["Sex"] and cf2.constraints.ranges == {"Age": [0.0, 1.0]}


def test_sparsity_gate_weights_each_sample_and_is_saved(tmp_path):
    X, cf = make(train_steps=20, sparsity_gate=1.0)
    cf.fit(X)
    rows = cf.space.rows(cf.preprocessor.to_codes(X[:8]))
    with torch.no_grad():
        heads = [h + 0.3 for h in cf.params["decoder"](cf.params["encoder"](rows.model))]  # a "counterfactual" that moved
    ones, half = torch.ones(8), torch.full((8,), 0.5)
    plain = cf.space.sparsity(heads, rows, None)
    assert set(plain) == {"sparsity_num_loss", "sparsity_cat_loss"}
    for k, v in cf.space.sparsity(heads, rows, ones).items():
        torch.testing.assert_close(v, plain[k])
        torch.testing.assert_close(cf.space.sparsity(heads, rows, half)[k], 0.5 * plain[k])
    cf.save(tmp_path / "cf")
    assert CounterfactualRLTabular.load(tmp_path / "cf", Black()).config.sparsity_gate == 1.0
    for bad in (-0.5, 2.0):
        with pytest.raises(ValueError, match="sparsity_gate"):
            make(sparsity_gate=bad)


def test_same_seed_same_explainer():
    X, a = make(train_steps=15)
    _, b = make(train_steps=15)
    a.fit(X)
    b.fit(X)
    Xe = data(10, seed=5)
    out_a = a.explain(Xe, np.array([1]), C={}).data["cf"]["X"]
    assert (out_a == b.explain(Xe, np.array([1]), C={}).data["cf"]["X"]).all()


def test_errors():
    X, pre, ae = autoencoder()
    args = (Black(), ae.encoder, ae.decoder, 3)
    with pytest.raises(TypeError, match="TabularPreprocessor"):
        CounterfactualRLTabular(*args, lambda x: x, lambda x: x, 0.5, 0.5)
    with pytest.raises(ValueError, match="did you mean 'Age'"):
        CounterfactualRLTabular(*args, pre, None, 0.5, 0.5, immutable_features=["age"])
    with pytest.raises(ValueError, match="did you mean 'Hours'"):
        CounterfactualRLTabular(*args, pre, None, 0.5, 0.5, ranges={"Hour": [0, 1]})
    with pytest.raises(ValueError, match="low <= 0 <= high"):
        CounterfactualRLTabular(*args, pre, None, 0.5, 0.5, ranges={"Age": [1, 0]})
    with pytest.raises(ValueError, match="not in the feature's units"):
        CounterfactualRLTabular(*args, pre, None, 0.5, 0.5, ranges={"Age": [0, 20]})
    with pytest.raises(ValueError, match="immutable"):
        CounterfactualRLTabular(*args, pre, None, 0.5, 0.5, immutable_features=["Age"], ranges={"Age": [0, 1]})
    with pytest.raises(ValueError, match="category_map"):
        CounterfactualRLTabular(*args, pre, None, 0.5, 0.5, category_map={"Job": ["clerk", "nurse"]})
    with pytest.raises(ValueError, match="feature_names"):
        CounterfactualRLTabular(*args, pre, None, 0.5, 0.5, feature_names=["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="postprocessing_funcs"):
        CounterfactualRLTabular(*args, pre, None, 0.5, 0.5, postprocessing_funcs=[])
    with pytest.raises(ValueError, match="unknown key"):
        CounterfactualRLTabular(*args, pre, None, 0.5, 0.5, train_step=10)
    X, cf = fitted()
    Xe = data(8, seed=6)
    with pytest.raises(ValueError, match="categories of Job"):
        cf.explain(Xe, np.array([1]), C={"Job": ["pilot"]})
    with pytest.raises(ValueError, match="did you mean 'Hours'"):
        cf.explain(Xe, np.array([1]), C={"hours": [0, 1]})
    with pytest.raises(ValueError, match="immutable"):
        cf.explain(Xe, np.array([1]), C={"Sex": ["F"]})
    with pytest.raises(ValueError, match="low <= 0 <= high"):
        cf.explain(Xe, np.array([1]), C={"Hours": [3, 5]})
    with pytest.raises(ValueError, match="4 columns"):
        cf.explain(Xe[:, :3], np.array([1]))
    bad = Xe.copy()
    bad[2, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        cf.explain(bad, np.array([1]))
    with pytest.raises(ValueError, match=r"\[8, 9\]"):
        cf.explain(Xe, np.array([1]), C=np.zeros((8, 3)))
    with pytest.raises(ValueError, match="class labels"):
        cf.explain(Xe, np.array([2]))
    # alibi: without C a conditional explainer keeps the immutable features and ranges only, as with C={}
    np.testing.assert_array_equal(cf.explain(Xe, np.array([1])).data["cf"]["X"],
                                  cf.explain(Xe, np.array([1]), C={}).data["cf"]["X"])
    _, nc = make(conditional=False, train_steps=5)
    with pytest.raises(RuntimeError, match="not fitted"):
        nc.explain(Xe, np.array([1]))
    nc.fit(X)
    assert nc.cond_dim == 0
    with pytest.raises(ValueError, match="trained without conditioning"):
        nc.explain(Xe, np.array([1]), C={"Age": [0, 2]})
    with pytest.raises(ValueError, match="conditional=True"):
        nc.explain(Xe[:1], np.array([1]), diversity=True)
    check_constraints(Xe, nc.explain(Xe, np.array([1])).data["cf"]["X"])  # constraints hold without conditioning
