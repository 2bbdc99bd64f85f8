"""Shared helpers: eval_mode restores every submodule's own mode, also after an error."""
import pytest
import torch
import torch.nn as nn

from xrl._utils import eval_mode


def test_eval_mode_restores_each_submodule_also_on_error():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    net.train()
    net[1].eval()  # the user froze this BatchNorm
    stats = net[1].running_mean.clone()
    with pytest.raises(RuntimeError):
        with eval_mode(net, None):
            assert not any(m.training for m in net.modules())
            net(torch.randn(5, 3))
            raise RuntimeError("boom")
    assert net.training and net[0].training and not net[1].training and net[2].training
    assert torch.equal(net[1].running_mean, stats)


def test_init_rng_seeds_construction_like_manual_seed_and_leaves_the_global_rng():
    from xrl._utils import init_rng

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        reference = nn.Linear(5, 3)
    before = torch.random.get_rng_state()
    with init_rng(7):
        seeded = nn.Linear(5, 3)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(seeded.weight, reference.weight) and torch.equal(seeded.bias, reference.bias)
    with pytest.raises(ValueError):
        with init_rng():
            nn.Linear(2, 2)
            raise ValueError("boom")
    assert torch.equal(torch.random.get_rng_state(), before)    # restored after an error too
