"""Layer access: names, resolution with suggestions, capture shapes, patching, hooks removed after errors."""
import torch

torch.set_num_threads(1)  # small shared CI box: one thread per xdist worker
import pytest
import torch
from torch import nn

from xrl.hooks import capture, get_abbreviator, get_layer, get_model_layers, layer_names, patch


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.res1 = nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))

    def forward(self, x):
        x = self.conv(x)
        return x + self.res1(x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedder = nn.Module()
        self.embedder.block1 = Block()
        self.embedder.relu_after_convs = nn.ReLU()
        self.fc_value = nn.Linear(4 * 6 * 6, 1)

    def forward(self, x):
        h = self.embedder.relu_after_convs(self.embedder.block1(x))
        return self.fc_value(h.flatten(1))


def hooks_left(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def test_names_and_underscore_aliases():
    net = Net()
    names = layer_names(net)
    assert "embedder.block1.res1.1" in names and "embedder.relu_after_convs" in names
    assert "embedder_block1_res1_1" in get_model_layers(net)
    assert get_layer(net, "embedder_relu_after_convs") is net.embedder.relu_after_convs
    assert get_layer(net, "embedder.block1.conv") is get_layer(net, "embedder_block1_conv")
    reprs = get_model_layers(net, getLayerRepr=True)
    assert reprs["fc_value"].startswith("Linear")


def test_abbreviator_strips_shared_path():
    names = ["net/block2/Relu", "net/block3/Relu"]
    ab = get_abbreviator(names)
    assert [n[ab] for n in names] == ["block2", "block3"]
    seed_names = get_model_layers(Net())
    assert [n[get_abbreviator(seed_names)] for n in seed_names] == seed_names


def test_capture_shapes_and_removal():
    net = Net()
    x = torch.rand(3, 2, 6, 6)
    with capture(net, ["embedder.block1", "embedder_relu_after_convs", "fc_value"]) as acts:
        net(x)
    assert acts["embedder.block1"].shape == (3, 4, 6, 6)
    assert acts["embedder_relu_after_convs"].min() >= 0
    assert acts["fc_value"].shape == (3, 1)
    assert hooks_left(net) == 0


def test_hooks_removed_after_error():
    net = Net()
    with pytest.raises(RuntimeError):
        with capture(net, "embedder.block1.conv"):
            net(torch.rand(2, 3, 6, 6))  # wrong channel count
    assert hooks_left(net) == 0
    with pytest.raises(ValueError):
        with patch(net, "embedder.block1", torch.zeros(2, 5, 6, 6)):  # wrong shape
            net(torch.rand(2, 2, 6, 6))
    assert hooks_left(net) == 0


def test_patch_replaces_output():
    net = Net()
    x = torch.rand(2, 2, 6, 6)
    with patch(net, "embedder.relu_after_convs", torch.zeros(2, 4, 6, 6)) as rec:
        out = net(x)
    torch.testing.assert_close(out, net.fc_value.bias.expand(2, 1))
    assert rec["original"].shape == (2, 4, 6, 6)
    with patch(net, "embedder.relu_after_convs", lambda a: 2 * a):
        out2 = net(x)
    assert not torch.allclose(out2, net(x))


def test_unknown_layer_lists_close_names():
    net = Net()
    with pytest.raises(ValueError, match=r"did you mean .*embedder_block1_res1") as exc:
        get_layer(net, "embedder_block1_res")
    assert "valid names include" in str(exc.value)
    with pytest.raises(TypeError):
        get_layer(net, 3)
