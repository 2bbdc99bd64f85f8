"""Nothing lost, nothing silently wrong (issue 24, CFRL parts), each test a user's situation: interrupted saves,
resumed training (other data, learning-rate schedules, Ctrl-C), loads and global RNGs, and clear errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from xrl import io
from xrl.counterfactual import CounterfactualRL, CounterfactualRLTabular
from xrl.preprocessing import TabularPreprocessor

from test_tabular import Black, data, make as make_tabular  # noqa: E402  (tests/counterfactual is on sys.path)


def make(models, steps=60, **kw):
    clf, enc, dec = models
    kw = {"batch_size": 64, "actor_hidden_dim": 32, "critic_hidden_dim": 32, "seed": 0, **kw}
    predictor = kw.pop("predictor", clf)
    return CounterfactualRL(predictor, enc, dec, coeff_sparsity=0.5, coeff_consistency=0.0, latent_dim=8,
                            train_steps=steps, progress=False, **kw)


def load(path, models, **kw):
    clf, enc, dec = models
    return CounterfactualRL.load(path, kw.pop("predictor", clf), encoder=enc, decoder=dec, **kw)


def assert_same_networks(a, b, atol=0.0):
    for name in ("actor", "critic"):
        for (k, u), (_, v) in zip(a.params[name].state_dict().items(), b.params[name].state_dict().items()):
            torch.testing.assert_close(u, v, rtol=0, atol=atol, msg=f"{name}.{k}")


# ------------------------------------------------------------------------------------- 1. one save, one transaction
def _writes(save, tmp_path, monkeypatch) -> int:
    """How many files one save writes."""
    calls, write = [], io.atomic_write_bytes
    monkeypatch.setattr(io, "atomic_write_bytes", lambda path, data: calls.append(path) or write(path, data))
    save(tmp_path / "count")
    monkeypatch.undo()
    return len(calls)


def _interrupt_write(monkeypatch, k):
    """Make the k-th file write of the next save raise KeyboardInterrupt (Ctrl-C at a file boundary)."""
    calls, write = {"n": 0}, io.atomic_write_bytes

    def interrupted(path, data):
        calls["n"] += 1
        if calls["n"] == k:
            raise KeyboardInterrupt
        write(path, data)

    monkeypatch.setattr(io, "atomic_write_bytes", interrupted)


def test_an_interrupted_save_leaves_exactly_the_old_explainer(digits, digits_models, tmp_path, monkeypatch):
    X, _ = digits
    old, new = make(digits_models, seed=1).fit(X), make(digits_models, seed=2).fit(X)
    path = tmp_path / "cf"
    old.save(path)
    expected = {name: ex.explain(X[:50], np.array([3])).data["cf"]["X"] for name, ex in (("old", old), ("new", new))}
    n = _writes(new.save, tmp_path, monkeypatch)
    assert n == 5  # weights, training tensors and JSON, config, manifest
    for k in range(1, n + 1):  # Ctrl-C at every file boundary
        _interrupt_write(monkeypatch, k)
        with pytest.raises(KeyboardInterrupt):
            new.save(path)
        monkeypatch.undo()
        np.testing.assert_array_equal(load(path, digits_models).explain(X[:50], np.array([3])).data["cf"]["X"],
                                      expected["old"])
    new.save(path)
    np.testing.assert_array_equal(load(path, digits_models).explain(X[:50], np.array([3])).data["cf"]["X"],
                                  expected["new"])


def test_an_interrupted_tabular_save_never_pairs_the_old_actor_with_new_constraints(tmp_path, monkeypatch):
    X, old = make_tabular(train_steps=20)
    _, new = make_tabular(train_steps=20, seed=3)
    new.constraints.__init__(new.preprocessor, ["Sex", "Job"], {"Age": [0, 1]})  # the new one keeps Job too
    old.fit(X)
    new.fit(X)
    path, Xe = tmp_path / "tab", data(40, seed=9)
    old.save(path)
    before = old.explain(Xe, np.array([1]), retries=0).data["cf"]["X"]
    n = _writes(new.save, tmp_path, monkeypatch)
    assert n == 6  # + tabular.json
    for k in range(1, n + 1):
        _interrupt_write(monkeypatch, k)
        with pytest.raises(KeyboardInterrupt):
            new.save(path)
        monkeypatch.undo()
        loaded = CounterfactualRLTabular.load(path, Black())
        assert loaded.constraints.immutable_features == ["Sex"]
        assert (loaded.explain(Xe, np.array([1]), retries=0).data["cf"]["X"] == before).all()


# ------------------------------------------------------------------------------------- 2. copies at the boundary
def test_a_black_box_returning_a_reused_buffer_gets_correct_labels(digits, digits_models):
    X, _ = digits
    clf = digits_models[0]
    buffer = np.zeros((2000, 10), np.float32)

    def serving(x):  # returns a view of one output buffer that every call overwrites
        with torch.no_grad():
            buffer[:len(x)] = clf(torch.from_numpy(x)).numpy()
        return buffer[:len(x)]

    cf = make(digits_models, predictor=serving, seed=4).fit(X)
    assert_same_networks(cf, make(digits_models, seed=4).fit(X))
    exp = cf.explain(X[:300], np.array([5]), batch_size=100)
    with torch.no_grad():
        np.testing.assert_array_equal(exp.data["orig"]["class"][:, 0], clf(torch.from_numpy(X[:300])).argmax(1))
        np.testing.assert_array_equal(exp.data["cf"]["class"][:, 0],
                                      clf(torch.from_numpy(exp.data["cf"]["X"])).argmax(1))


# ------------------------------------------------------------------------------------- 3. resume
def test_resuming_on_other_data_with_as_many_rows_is_an_error(digits, digits_models, tmp_path):
    X, _ = digits
    make(digits_models, steps=30).fit(X).save(tmp_path / "cf")
    resumed = load(tmp_path / "cf", digits_models, train_steps=60)
    with pytest.raises(ValueError, match="X: differs from the data this explainer was trained on"):
        resumed.fit(X[::-1].copy())
    resumed.fit(X)
    assert resumed._step == 60


def test_a_split_run_with_lr_decay_equals_an_uninterrupted_one(digits, digits_models, tmp_path):
    X, _ = digits
    full = make(digits_models, steps=120, lr_decay=0.1, seed=6).fit(X)
    part = make(digits_models, steps=50, lr_decay=0.1, lr_decay_steps=120, seed=6).fit(X)
    part.save(tmp_path / "cf")
    resumed = load(tmp_path / "cf", digits_models, train_steps=120).fit(X)
    assert_same_networks(full, resumed, atol=1e-6)
    lr = full.params["optimizer_actor"].param_groups[0]["lr"]
    assert lr == pytest.approx(1e-3 * (1 - 0.9 * 119 / 120)) == resumed.params["optimizer_actor"].param_groups[0]["lr"]


@pytest.mark.parametrize("where, update_every", [("black box", 1), ("actor update", 1), ("black box", 4),
                                                 ("exploration", 1)])
def test_ctrl_c_then_save_and_resume_equals_an_uninterrupted_run(where, update_every, digits, digits_models,
                                                                   tmp_path):
    X, _ = digits
    clf = digits_models[0]
    full = make(digits_models, steps=70, update_every=update_every, seed=8).fit(X)
    calls, prepare = {"n": 0, "steps": 0}, -(-len(X) // 64)

    def predictor(x):  # Ctrl-C while the black box labels counterfactuals, a few steps after updates began
        calls["n"] += 1
        if calls["n"] == prepare + {"black box": 33 if update_every == 1 else 9, "exploration": 5}.get(where, -len(X)):
            raise KeyboardInterrupt
        with torch.no_grad():
            return clf(torch.from_numpy(x)).numpy()

    def half_update(optimizer, args, kwargs):  # each update steps the critic, then the actor
        calls["steps"] += 1
        if calls["steps"] == 50:  # the 25th actor step, right after the 25th critic step
            raise KeyboardInterrupt

    cf = make(digits_models, steps=70, update_every=update_every, seed=8, predictor=predictor)
    hook = register_optimizer_step_pre_hook(half_update) if where == "actor update" else None
    try:
        with pytest.raises(KeyboardInterrupt):
            cf.fit(X)
    finally:
        if hook is not None:
            hook.remove()
    assert 0 < cf._step < 70
    cf.save(tmp_path / "cf")
    resumed = load(tmp_path / "cf", digits_models, predictor=predictor).fit(X)
    assert resumed._step == 70
    assert_same_networks(full, resumed, atol=1e-6)


# ------------------------------------------------------------------------------------- 4. loads and global RNGs
def test_loading_leaves_the_global_rng_alone(digits, digits_models, tmp_path):
    X, _ = digits
    make(digits_models, steps=20).fit(X).save(tmp_path / "cf")
    Xt, tab = make_tabular(train_steps=10)
    tab.fit(Xt).save(tmp_path / "tab")
    state = torch.random.get_rng_state()
    load(tmp_path / "cf", digits_models)
    CounterfactualRLTabular.load(tmp_path / "tab", Black())
    assert torch.equal(torch.random.get_rng_state(), state)


# ------------------------------------------------------------------------------------- 6. clear errors
def test_explaining_no_rows_is_a_clear_error(digits, digits_models):
    X, _ = digits
    cf = make(digits_models, steps=15).fit(X)
    with pytest.raises(ValueError, match="X: expected at least one row"):
        cf.explain(X[:0], np.array([1]))
    Xt, tab = make_tabular(train_steps=10)
    tab.fit(Xt)
    with pytest.raises(ValueError, match="X: expected at least one row"):
        tab.explain(Xt[:0], np.array([1]))


class TupleModel(nn.Module):
    def __init__(self, clf):
        super().__init__()
        self.clf = clf

    def forward(self, x):
        logits = self.clf(x)
        return logits, logits.sum(1)  # (logits, value), as actor-critic models return


def test_float64_and_tuple_returning_modules_get_clear_errors(digits, digits_models):
    X, _ = digits
    clf, enc, dec = digits_models
    import copy
    with pytest.raises(TypeError, match=r"predictor: expected a torch.nn.Module with float32 parameters.*float64.*"
                                        r"predictor.float\(\)"):
        make(digits_models, predictor=copy.deepcopy(clf).double())
    with pytest.raises(TypeError, match="decoder: expected a torch.nn.Module with float32 parameters"):
        make((clf, enc, copy.deepcopy(dec).double()))
    with pytest.raises(TypeError, match=r"predictor: expected one array of predictions.*a tuple of 2.*model\(x\)\[0\]"):
        make(digits_models, predictor=TupleModel(clf)).fit(X)


def test_numpy_integers_are_accepted_for_sizes_and_seeds(digits, digits_models):
    X, _ = digits
    a = make(digits_models, steps=np.int64(30), batch_size=np.int32(64), seed=np.int64(2)).fit(X)
    b = make(digits_models, steps=30, batch_size=64, seed=2).fit(X)
    assert_same_networks(a, b)
    np.testing.assert_array_equal(a.explain(X[:70], np.array([2]), batch_size=np.int64(32)).data["cf"]["X"],
                                  b.explain(X[:70], np.array([2]), batch_size=32).data["cf"]["X"])


@pytest.mark.parametrize("key", ["state", "config", "networks"])
def test_a_config_file_missing_a_section_names_it(key, digits, digits_models, tmp_path):
    X, _ = digits
    make(digits_models, steps=15).fit(X).save(tmp_path / "cf", training_state=False)
    config = json.loads((tmp_path / "cf" / "config.json").read_text())
    del config[key]
    (tmp_path / "cf" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="differs from the save's manifest.json"):  # edited after saving
        load(tmp_path / "cf", digits_models)
    (tmp_path / "cf" / "manifest.json").unlink()
    with pytest.raises(ValueError, match=rf"config.json: expected the keys .*\['{key}'\] missing.*re-save"):
        load(tmp_path / "cf", digits_models)


def test_tabular_preprocessor_errors_for_empty_data_and_nan():
    X = data(20)
    with pytest.raises(ValueError, match="X: expected at least one row to fit on"):
        TabularPreprocessor(["Age", "Job", "Hours", "Sex"], {"Job": ["clerk", "manager", "nurse"],
                                                             "Sex": ["F", "M"]}).fit(X[:0])
    pre = TabularPreprocessor(["Age", "Job", "Hours", "Sex"], {"Job": ["clerk", "manager", "nurse"],
                                                               "Sex": ["F", "M"]}).fit(X)
    Z = pre.transform(X[:3])
    Z[1, 0] = np.nan
    with pytest.raises(ValueError, match="Z: expected finite model-space values"):
        pre.inverse_transform(Z)
    with pytest.raises(ValueError, match="Z: expected finite"):
        pre.inverse_transform(pre.split_model(torch.from_numpy(Z)))


def test_a_predictor_with_other_classes_after_reset_predictor_is_refused(digits, digits_models):
    X, _ = digits
    clf = digits_models[0]
    cf = make(digits_models, steps=15).fit(X)
    cf.reset_predictor(lambda x: clf(torch.from_numpy(x)).detach().numpy()[:, :3])
    with pytest.raises(ValueError, match=r"predictor: returns 3 column\(s\) but the explainer was trained with a "
                                         "predictor of 10"):
        cf.explain(X[:5], np.array([1]))


class TiedDecoder(nn.Module):
    """Decodes with the transpose of the encoder's linear layer (tied weights) and its own bias."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear, self.bias = linear, nn.Parameter(torch.zeros(64))

    def forward(self, z):
        return torch.sigmoid(F.linear(z, self.linear.weight.t(), self.bias)).view(-1, 1, 8, 8)


def test_an_autoencoder_with_tied_weights_saves_and_loads(digits, digits_models, tmp_path):
    X, _ = digits
    clf = digits_models[0]

    def tied():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            enc = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.Tanh())
        return enc, TiedDecoder(enc[1])

    enc, dec = tied()
    cf = make((clf, enc, dec), steps=20).fit(X)
    cf.save(tmp_path / "cf")
    enc2, dec2 = tied()
    loaded = CounterfactualRL.load(tmp_path / "cf", clf, encoder=enc2, decoder=dec2)
    assert dec2.linear.weight is enc2[1].weight
    np.testing.assert_array_equal(loaded.explain(X[:20], np.array([1])).data["cf"]["X"],
                                  cf.explain(X[:20], np.array([1])).data["cf"]["X"])


def test_all_zero_one_hot_targets_and_zero_train_steps_are_refused(digits, digits_models):
    X, _ = digits
    cf = make(digits_models, steps=15).fit(X)
    targets = np.eye(10)[[1, 2, 3]]
    targets[1] = 0
    with pytest.raises(ValueError, match=r"Y_t: expected one-hot rows.*row 1 has no single class"):
        cf.explain(X[:3], targets)
    with pytest.raises(ValueError, match="train_steps: expected a value >= 1, got 0"):
        make(digits_models, steps=0)
