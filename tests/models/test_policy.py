"""Seed 003's `CategoricalPolicyGM(embedder=ImpalaModel(in_channels=3), action_size=...)` loads IMPALA weights."""
import pytest
import torch

from xrl.models import CategoricalPolicyGM, ImpalaCNN, ImpalaModel
from xrl.pretrained import load_pretrained
from xrl.vision import ParameterEditor, get_var


def test_the_seed_cell_loads_an_impala_state_dict_and_gives_the_same_outputs():
    bundled = load_pretrained("coinrun")
    model_state_dict = bundled.state_dict()
    embedder = ImpalaModel(in_channels=3)
    model = CategoricalPolicyGM(embedder=embedder, action_size=model_state_dict["fc_policy.weight"].shape[0])
    model.load_state_dict(model_state_dict)
    model.eval()
    assert model.embedder is embedder and isinstance(model, ImpalaCNN)
    obs = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        (l1, v1), (l2, v2) = model(obs), bundled(obs)
    assert torch.equal(l1, l2) and torch.equal(v1, v2)


def test_lucid_parameter_editor_call_edits_the_model():
    model = CategoricalPolicyGM(embedder=ImpalaModel(in_channels=3), action_size=15)
    editor = ParameterEditor(model.graph_def)          # the seed's call
    kernel = editor["embedder.block3.conv.weight"]
    editor["embedder.block3.conv.weight"] = kernel * 0.5
    assert torch.allclose(torch.as_tensor(get_var(model, "embedder.block3.conv.weight")),
                          torch.as_tensor(kernel.transpose(3, 2, 0, 1) * 0.5))


def test_a_small_embedder_sets_the_input_shape():
    model = CategoricalPolicyGM(embedder=ImpalaModel(in_channels=4, channels=(8, 16, 16), fc_dim=32,
                                                     input_hw=(10, 10)), action_size=3)
    assert model.obs_shape == (4, 10, 10) and model.channels == (8, 16, 16) and model.fc_dim == 32
    logits, value = model(torch.zeros(2, 4, 10, 10))
    assert logits.shape == (2, 3) and value.shape == (2,)


def test_embedder_must_be_an_impala_model():
    with pytest.raises(TypeError, match="embedder: expected an xrl.models.ImpalaModel, got 'Linear'"):
        CategoricalPolicyGM(embedder=torch.nn.Linear(2, 2), action_size=3)
