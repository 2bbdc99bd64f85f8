"""The user's black box is what gets called, as given, from the caller's thread, and what an explanation reports
about it is what it returned; nothing process-wide changes (threads, subprocesses, torch threads, RNGs, modes)."""
from __future__ import annotations

import copy
import os
import random
import subprocess
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xrl.counterfactual import CounterfactualRL


def make(predictor, enc, dec, steps=120, **kw):
    kw = {"batch_size": 64, "actor_hidden_dim": 64, "critic_hidden_dim": 64, "seed": 0, **kw}
    return CounterfactualRL(predictor, enc, dec, coeff_sparsity=0.5, coeff_consistency=0.0, latent_dim=8,
                            train_steps=steps, progress=False, **kw)


def eager_classes(module: nn.Module, X: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(X)).argmax(1).numpy()


def targets_for(module: nn.Module, X: np.ndarray, seed: int = 0) -> np.ndarray:
    return (eager_classes(module, X) + np.random.default_rng(seed).integers(1, 10, len(X))) % 10


def digits_cnn(X: np.ndarray, y: np.ndarray) -> nn.Module:
    """conv -> ReLU -> pool twice, then a linear layer (8x8 digits, about 97% training accuracy)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cnn = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(16, 8, 2, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                            nn.Linear(8 * 2 * 2, 10))
    opt = torch.optim.Adam(cnn.parameters(), 1e-2)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(cnn(torch.from_numpy(X)), torch.from_numpy(y)).backward()
        opt.step()
    return cnn.eval()


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_reported_classes_are_the_modules_own_eager_argmax(kind, digits, digits_models):
    X, y = digits
    clf, enc, dec = digits_models
    module = clf if kind == "mlp" else digits_cnn(X, y)
    cf = make(module, enc, dec, steps=150, seed=5).fit(X)
    exp = cf.explain(X[:437], targets_for(module, X[:437]), batch_size=50)  # 9 batches, the last one short
    np.testing.assert_array_equal(exp.data["orig"]["class"][:, 0], eager_classes(module, X[:437]))
    mismatches = int((exp.data["cf"]["class"][:, 0] != eager_classes(module, exp.data["cf"]["X"])).sum())
    assert mismatches == 0


def test_no_thread_no_subprocess_no_global_state_change(digits, digits_models, monkeypatch, tmp_path):
    X, _ = digits
    clf, enc, dec = digits_models
    started = []

    def forbid(*args, **kwargs):  # recorded as well as raised: a library may swallow the error (tqdm's monitor does)
        started.append(args)
        raise RuntimeError("a thread or a subprocess was started")

    for target, name in ((threading.Thread, "start"), (subprocess, "Popen"), (os, "fork"), (os, "system"),
                         (os, "posix_spawn")):
        monkeypatch.setattr(target, name, forbid)
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    before = (torch.random.get_rng_state(), np.random.get_state()[1].copy(), random.getstate(), torch.get_num_threads())
    modes = [m.training for m in clf.modules()]

    def numpy_black_box(x):
        with torch.no_grad():
            return clf(torch.from_numpy(x)).numpy()

    for predictor in (clf, numpy_black_box):
        cf = CounterfactualRL(predictor, enc, dec, 0.5, 0.0, latent_dim=8, train_steps=40, batch_size=64,
                              actor_hidden_dim=32, critic_hidden_dim=32)  # progress bar on, as by default
        cf.fit(X)
        cf.explain(X[:100], np.array([3]))
        cf.save(tmp_path / "cf")
        CounterfactualRL.load(tmp_path / "cf", predictor, encoder=enc, decoder=dec).explain(X[:10], np.array([1]))
    after = (torch.random.get_rng_state(), np.random.get_state()[1], random.getstate(), torch.get_num_threads())
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1])
    assert before[2] == after[2] and before[3] == after[3]
    assert [m.training for m in clf.modules()] == modes
    assert started == []


class StatefulBlackBox:
    """A serving wrapper as users write them: it keeps its input on ``self`` and answers from a reused buffer."""

    def __init__(self, clf: nn.Module) -> None:
        self.clf, self.last, self.out = clf, None, np.zeros((1000, 10), np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.last = x
        with torch.no_grad():
            self.out[:len(x)] = self.clf(torch.from_numpy(self.last)).numpy()
        return self.out[:len(x)]  # a view of a buffer the next call overwrites


def test_a_stateful_buffer_reusing_black_box_gets_every_label_right(digits, digits_models):
    X, _ = digits
    clf, enc, dec = digits_models
    cf = make(StatefulBlackBox(clf), enc, dec, seed=2).fit(X)
    reference = make(clf, enc, dec, seed=2).fit(X)  # the same training: the labels it learned from are the same
    for a, b in zip(cf.params["actor"].parameters(), reference.params["actor"].parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    exp = cf.explain(X[:200], targets_for(clf, X[:200]), batch_size=40)
    np.testing.assert_array_equal(exp.data["orig"]["class"][:, 0], eager_classes(clf, X[:200]))
    np.testing.assert_array_equal(exp.data["cf"]["class"][:, 0], eager_classes(clf, exp.data["cf"]["X"]))


class BranchingClassifier(nn.Module):
    """``forward`` takes a data-dependent Python branch: bright images get their scores rolled by one class."""

    def __init__(self, clf: nn.Module, threshold: float) -> None:
        super().__init__()
        self.clf, self.threshold = clf, threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.clf(x)
        bright = x.flatten(1).mean(1) > self.threshold
        if bool(bright.any()):  # a traced copy would keep the branch of the batch it was traced on
            logits = torch.where(bright[:, None], logits.roll(1, dims=1), logits)
        return logits


def test_weights_changed_in_place_and_data_dependent_branches_are_explained_faithfully(digits, digits_models):
    X, y = digits
    clf, enc, dec = digits_models
    module = BranchingClassifier(digits_cnn(X, y), threshold=float(np.median(X.reshape(len(X), -1).mean(1))))
    cf = make(module, enc, dec, steps=100, seed=1).fit(X)
    targets = targets_for(module, X[:300], seed=4)
    cf.explain(X[:300], targets)
    with torch.no_grad():  # the user edits the model after fit, as in fine-tuning or pruning
        for p in module.clf.parameters():
            p.data.copy_(p.data * 1.5 + 0.05)
    seen = []
    handle = module.clf[-1].register_forward_hook(lambda m, i, o: seen.append(len(o)))
    try:
        exp = cf.explain(X[:300], targets, batch_size=64)
    finally:
        handle.remove()
    assert sum(seen) == 600  # originals and counterfactuals, every row through the user's module and its hook
    np.testing.assert_array_equal(exp.data["orig"]["class"][:, 0], eager_classes(module, X[:300]))
    np.testing.assert_array_equal(exp.data["cf"]["class"][:, 0], eager_classes(module, exp.data["cf"]["X"]))


def _with_frozen_batchnorm(net: nn.Module, width: int) -> nn.Sequential:
    seq = nn.Sequential(copy.deepcopy(net), nn.BatchNorm1d(width)).train()
    seq[1].eval()  # a train-mode network with a BatchNorm the user froze in eval mode
    return seq


def test_a_frozen_batchnorm_inside_a_training_network_keeps_its_mode_and_statistics(digits, digits_models):
    X, _ = digits
    clf, enc, dec = digits_models
    predictor, encoder = _with_frozen_batchnorm(clf, 10), _with_frozen_batchnorm(enc, 8)
    nets = (predictor, encoder)
    stats = [(m[1].running_mean.clone(), m[1].running_var.clone()) for m in nets]
    cf = CounterfactualRL(predictor, encoder, dec, 0.5, 0.0, latent_dim=8, train_steps=30, batch_size=64,
                          actor_hidden_dim=32, critic_hidden_dim=32, progress=False).fit(X)
    cf.explain(X[:50], np.array([1]))
    for m, (mean, var) in zip(nets, stats):
        assert m.training and not m[1].training and m[0].training
        assert torch.equal(m[1].running_mean, mean) and torch.equal(m[1].running_var, var)
