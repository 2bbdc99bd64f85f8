"""One loader for every bundled model: names, kinds, provenance, round trips, clear errors."""
import json

import pytest
import torch

from xrl import pretrained
from xrl.agents import ImpalaCNN
from xrl.models import AE, MNISTDecoder, MNISTEncoder
from xrl.pretrained import PRETRAINED, available, load_pretrained, load_reference_model, save_reference_model
from xrl.worldmodel import DreamerAgent


def test_every_registered_model_is_bundled_and_listed():
    assert set(available()) == set(PRETRAINED)


@pytest.mark.parametrize("name,cls", [("breakout", ImpalaCNN), ("freeway", ImpalaCNN), ("coinrun", ImpalaCNN),
                                      ("freeway_pomdp", DreamerAgent), ("mnist_autoencoder", AE)])
def test_load_pretrained_returns_the_right_network_in_eval_mode(name, cls):
    model = load_pretrained(name)
    assert isinstance(model, cls) and not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_bundled_mnist_models_are_good_and_record_their_command():
    from xrl.datasets import load_mnist
    from xrl.models.training import predict_batched

    _, (X_test, y_test) = load_mnist()
    clf, ae = load_pretrained("mnist_classifier"), load_pretrained("mnist_autoencoder")
    acc = float((predict_batched(clf, X_test[:2000]).argmax(1) == y_test[:2000]).mean())
    assert acc > 0.97
    rec = predict_batched(ae, X_test[:500])
    assert float(((rec - X_test[:500]) ** 2).mean()) < 0.03          # the mean image scores ~0.067
    for name, model in (("mnist_classifier", clf), ("mnist_autoencoder", ae)):
        assert model.metadata["command"].startswith("xrl cfrl mnist --retrain")
        readme = (pretrained.pretrained_path(name) / "README.md").read_text()
        assert model.metadata["command"] in readme
        assert (pretrained.pretrained_path(name) / "model.safetensors").stat().st_size < 4_000_000


def test_unknown_name_names_the_value_and_the_closest_name():
    with pytest.raises(ValueError, match=r"name: expected one of .*got 'brekout'.*breakout"):
        load_pretrained("brekout")


def test_missing_package_data_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(PRETRAINED, "breakout", pretrained.Pretrained("agent", str(tmp_path / "nothing"), "x"))
    with pytest.raises(FileNotFoundError, match="installed without its checkpoints"):
        load_pretrained("breakout")
    assert "breakout" not in available()


@pytest.mark.parametrize("half", [False, True])
def test_reference_model_round_trip(tmp_path, half):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ae = AE(MNISTEncoder(16), MNISTDecoder(16)).eval()
    save_reference_model(tmp_path / "ae", ae, {"note": "test"}, half=half)
    back = load_reference_model(tmp_path / "ae")
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (back(x) - ae(x)).abs().max().item()
    assert (diff == 0.0) if not half else (0 < diff < 1e-2)
    assert back.metadata == {"note": "test"} and back.encoder.latent_dim == 16


def test_saving_a_user_network_points_to_the_generic_saver(tmp_path):
    with pytest.raises(TypeError, match="xrl.io.save_module"):
        save_reference_model(tmp_path / "m", torch.nn.Linear(2, 2))


def test_corrupt_description_is_a_clear_error(tmp_path):
    save_reference_model(tmp_path / "m", MNISTEncoder(8))
    (tmp_path / "m" / "model.json").write_text(json.dumps({"weights": 1}))
    with pytest.raises(ValueError, match="expected an xrl reference-model description"):
        load_reference_model(tmp_path / "m")
    (tmp_path / "m" / "model.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt JSON"):
        load_reference_model(tmp_path / "m")


def test_weights_of_another_architecture_are_refused(tmp_path):
    save_reference_model(tmp_path / "m", MNISTEncoder(8))
    cfg = json.loads((tmp_path / "m" / "model.json").read_text())
    cfg["model"]["config"]["latent_dim"] = 9
    (tmp_path / "m" / "model.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="shape mismatches"):
        load_reference_model(tmp_path / "m")


@pytest.mark.parametrize("name", ["breakout", "freeway_pomdp", "mnist_autoencoder"])
def test_loading_leaves_the_global_rng_alone(name):
    state = torch.random.get_rng_state()
    load_pretrained(name)
    assert torch.equal(torch.random.get_rng_state(), state)
