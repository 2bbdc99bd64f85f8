"""TabularPreprocessor (exact inverse, formats, validation) and TabularConstraints (conditions, safe decoding)."""
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xrl.counterfactual.conditioning import TabularConstraints
from xrl.preprocessing import TabularPreprocessor

NAMES = ["Age", "Workclass", "Hours", "Sex", "Gain"]
CMAP = {1: ["Private", "State-gov", "?"], 3: ["Female", "Male"]}


def mixed(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = np.empty((n, 5), dtype=object)
    X[:, 0] = rng.integers(17, 90, n)
    X[:, 1] = rng.choice(CMAP[1], n)
    X[:, 2] = np.round(rng.uniform(1, 99, n), 2)
    X[:, 3] = rng.choice(CMAP[3], n)
    X[:, 4] = rng.integers(0, 10000, n)
    return X


def violations(cons, A, A_cf, C):
    """Rows of ``A_cf`` breaking immutability, the numerical bounds or the categorical masks of ``C``."""
    pre = cons.pre
    imm = [pre.feature_names_.index(f) for f in cons.immutable_features]
    low, high = cons.bounds(A, C)
    x = A_cf[:, pre.num_idx_]
    masks = torch.split(C[:, 2 * cons.n_num:], list(pre.cat_sizes_), 1)
    bad_mask = [m.gather(1, A_cf[:, j].long()[:, None])[:, 0] == 0 for j, m in zip(pre.cat_idx_, masks)]
    return {"immutable": int((A_cf[:, imm] != A[:, imm]).any(1).sum()),
            "range": int(((x < low) | (x > high)).any(1).sum()),
            "mask": int(torch.stack(bad_mask, 1).any(1).sum())}


def codes_array(n=60, seed=0):
    pre = TabularPreprocessor(NAMES, CMAP).fit(mixed(n, seed))
    return pre.to_codes(mixed(n, seed))


def test_object_array_round_trip_exact():
    X = mixed()
    pre = TabularPreprocessor(NAMES, CMAP).fit(X)
    assert pre.head_dims == [3, 3, 2] and pre.model_dim == 8
    Z = pre.transform(X, dtype=np.float64)
    back = pre.inverse_transform(Z)
    assert back.dtype == object
    for j in (0, 1, 3, 4):  # integers and categories: exact
        assert (back[:, j] == X[:, j]).all()
    np.testing.assert_allclose(back[:, 2].astype(float), X[:, 2].astype(float), rtol=1e-12)
    # float32 model space: integers and categories still exact
    back32 = pre.inverse_transform(pre.transform(X))
    assert (back32[:, [0, 1, 3, 4]] == X[:, [0, 1, 3, 4]]).all()


def test_integer_rounding_is_to_nearest_not_truncation():
    # alibi #549: 46.6 was cast to 46 (truncation), breaking "Age may only increase"
    X = np.array([[40.0, 0], [50.0, 1]])
    pre = TabularPreprocessor(["Age", "c"], {1: ["a", "b"]}).fit(X)
    assert pre.is_int_.tolist() == [True]
    z = (46.6 - pre.mean_[0]) / pre.std_[0]
    out = pre.inverse_transform(np.array([[z, 1.0, 0.0]], np.float32))
    assert out[0, 0] == 47


def test_dataframe_round_trip_and_names():
    X = mixed()
    df = pd.DataFrame(X, columns=NAMES).astype({"Age": "int64", "Hours": "float64", "Gain": "int64"})
    pre = TabularPreprocessor(category_map={"Workclass": CMAP[1], "Sex": CMAP[3]}).fit(df)
    back = pre.inverse_transform(pre.transform(df, dtype=np.float64))
    assert isinstance(back, pd.DataFrame) and list(back.columns) == NAMES
    pd.testing.assert_frame_equal(back.drop(columns="Hours"), df.drop(columns="Hours"), check_dtype=False)
    assert back["Age"].dtype == np.int64
    with pytest.raises(ValueError, match="missing"):
        pre.transform(df.drop(columns="Sex"))


def test_numeric_only_and_categorical_only():
    Xn = np.random.default_rng(0).normal(size=(20, 3))
    pre = TabularPreprocessor().fit(Xn)  # no category_map needed (alibi #809)
    assert pre.head_dims == [3] and pre.cat_idx_ == []
    np.testing.assert_allclose(pre.inverse_transform(pre.transform(Xn, dtype=np.float64)), Xn, rtol=1e-10)
    Xc = np.array([[0, 2], [1, 0], [1, 1]])
    pre = TabularPreprocessor(category_map={0: ["x", "y"], 1: ["u", "v", "w"]}).fit(Xc)
    assert pre.head_dims == [2, 3] and pre.n_num == 0
    assert (pre.inverse_transform(pre.transform(Xc)) == Xc).all()
    # integer codes given for a categorical feature also work with object arrays of names
    assert (pre.to_codes(np.array([["y", "w"]], dtype=object)) == [[1, 2]]).all()


def test_preprocessor_errors():
    pre = TabularPreprocessor(NAMES, CMAP).fit(mixed())
    bad = mixed(3)
    bad[0, 1] = "Privat"
    with pytest.raises(ValueError, match="did you mean 'Private'"):
        pre.transform(bad)
    with pytest.raises(ValueError, match="5 columns"):
        pre.transform(mixed(3)[:, :4])
    nan = mixed(3)
    nan[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pre.transform(nan)
    with pytest.raises(ValueError, match="2-D"):
        pre.transform(mixed(1)[0])
    with pytest.raises(ValueError, match="feature names or column indices"):
        TabularPreprocessor(NAMES, {"Workclas": CMAP[1]}).fit(mixed())
    with pytest.raises(ValueError, match="codes in"):
        TabularPreprocessor(["a", "b"], {1: ["x", "y"]}).fit(np.array([[1, 0], [2, 5]]))
    with pytest.raises(TypeError, match="numerical feature"):
        TabularPreprocessor(["a", "b"], {1: ["x", "y"]}).fit(np.array([[1, "x"], ["oops", "y"]], dtype=object))
    with pytest.raises(RuntimeError, match="not fitted"):
        TabularPreprocessor().transform(np.zeros((2, 2)))


def test_config_round_trip():
    X = mixed()
    pre = TabularPreprocessor(NAMES, CMAP).fit(X)
    pre2 = TabularPreprocessor.from_config(pre.to_config())
    np.testing.assert_array_equal(pre.transform(X), pre2.transform(X))
    assert (pre2.inverse_transform(pre.transform(X))[:, [0, 1, 3]] == X[:, [0, 1, 3]]).all()


# ---------------------------------------------------------------------------------------------- constraints
def make_constraints(**kw):
    pre = TabularPreprocessor(NAMES, CMAP).fit(mixed())
    return pre, TabularConstraints(pre, **kw)


def test_constraint_errors():
    pre = TabularPreprocessor(NAMES, CMAP).fit(mixed())
    with pytest.raises(ValueError, match="did you mean 'Age'"):
        TabularConstraints(pre, immutable_features=["Agee"])
    with pytest.raises(ValueError, match="low <= 0 <= high"):
        TabularConstraints(pre, ranges={"Age": [0.2, 1.0]})
    with pytest.raises(ValueError, match="not in the feature's units"):
        TabularConstraints(pre, ranges={"Age": [0, 20]})
    with pytest.raises(ValueError, match="immutable"):
        TabularConstraints(pre, immutable_features=["Age"], ranges={"Age": [0, 1]})
    with pytest.raises(ValueError, match="numerical features only"):
        TabularConstraints(pre, ranges={"Sex": [0, 1]})
    with pytest.raises(TypeError, match="list of feature names"):
        TabularConstraints(pre, immutable_features="Sex")
    pre, cons = make_constraints(immutable_features=["Sex"], ranges={"Age": [0, 1]})
    A = torch.from_numpy(pre.to_codes(mixed(4)))
    with pytest.raises(ValueError, match="categories of Workclass"):
        cons.condition_from_dicts(A, {"Workclass": ["Federal-gov"]})
    with pytest.raises(ValueError, match="immutable"):
        cons.condition_from_dicts(A, {"Sex": ["Male"]})
    with pytest.raises(ValueError, match="low <= 0 <= high"):
        cons.condition_from_dicts(A, {"Age": [5, 20]})
    with pytest.raises(ValueError, match="did you mean 'Hours'"):
        cons.condition_from_dicts(A, {"Hour": [0, 5]})
    with pytest.raises(ValueError, match="list of 1 or 4"):
        cons.condition_from_dicts(A, [{}, {}])
    with pytest.raises(ValueError, match=r"\[4, 11\]"):
        cons.check_condition(torch.zeros(4, 3), A)


def test_dict_condition_in_original_units():
    pre, cons = make_constraints(immutable_features=["Sex"], ranges={"Age": [0, 1]})
    A = torch.from_numpy(pre.to_codes(mixed(4)))
    C = cons.condition_from_dicts(A, {"Age": [-5, 20], "Workclass": ["State-gov"]})
    R = pre.range_[0]
    # Age: decrease clipped to 0 by the explainer's range, increase 20 years
    np.testing.assert_allclose(C[:, 0].numpy(), 0.0)
    np.testing.assert_allclose(C[:, 1].numpy(), 20 / R, rtol=1e-6)
    cons.check_condition(C, A)
    low, high = cons.bounds(A, C)
    np.testing.assert_array_equal(low[:, 0].numpy(), A[:, 0].numpy())
    expected = torch.minimum(A[:, 0] + 20, torch.maximum(A[:, 0], torch.tensor(pre.max_[0])))  # train max caps
    np.testing.assert_array_equal(high[:, 0].numpy(), expected.numpy())


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), scale=st.floats(0.1, 50.0), diverse=st.booleans(),
       age_hi=st.integers(0, 30), hours_lo=st.floats(-40, 0))
def test_projection_never_violates_constraints(seed, scale, diverse, age_hi, hours_lo):
    """Whatever the decoder outputs (wild logits and values), projected counterfactuals obey every constraint."""
    pre, cons = make_constraints(immutable_features=["Sex", "Gain"], ranges={"Age": [0, 1]})
    g = torch.Generator().manual_seed(seed)
    A = torch.from_numpy(pre.to_codes(mixed(32, seed % 1000)))
    for C in (cons.random_condition(A, g),
              cons.condition_from_dicts(A, {"Age": [0, age_hi], "Hours": [hours_lo, 3.5],
                                            "Workclass": ["?"]}, diverse=diverse, generator=g),
              cons.default_condition(A)):
        cons.check_condition(C, A)
        heads = [torch.randn(32, k, generator=g) * scale for k in pre.head_dims]
        A_cf = cons.project(heads, A, C)
        assert violations(cons, A, A_cf, C) == {"immutable": 0, "range": 0, "mask": 0}
        assert (A_cf[:, 0] >= A[:, 0]).all()  # Age only increases
        assert (A_cf[:, 0] == torch.round(A_cf[:, 0])).all() and (A_cf[:, 4] == A[:, 4]).all()
        assert (A_cf[:, 3] == A[:, 3]).all()
        # the counterfactual stays representable: round trip through the original format is exact
        back = pre.to_codes(pre.from_codes(A_cf.numpy()))
        np.testing.assert_array_equal(back[:, [0, 1, 3, 4]], A_cf.numpy()[:, [0, 1, 3, 4]])


def test_random_condition_statistics():
    pre, cons = make_constraints(immutable_features=["Sex"], ranges={"Age": [0, 0.5]})
    A = torch.from_numpy(pre.to_codes(mixed(60))).repeat(50, 1)
    C = cons.random_condition(A, torch.Generator().manual_seed(0))
    assert C.shape == (3000, cons.cond_dim)
    assert (C[:, 0] == 0).all() and (C[:, 1] >= 0).all() and (C[:, 1] <= 0.5).all()
    assert abs(float(C[:, 1].mean()) - 0.25) < 0.02  # Beta(2, 2) has mean 1/2
    sex = C[:, -2:]
    assert (sex.sum(1) == 1).all()  # immutable: one-hot mask
