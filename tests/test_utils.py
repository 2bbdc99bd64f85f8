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
