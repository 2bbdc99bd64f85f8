from __future__ import annotations

import torch

from xrl.models import AE, Actor, Critic, MNISTClassifier, MNISTDecoder, MNISTEncoder, build_model, glorot_init_, model_spec


def test_shapes_and_ranges():
    x = torch.rand(3, 1, 28, 28)
    assert MNISTClassifier(10)(x).shape == (3, 10)
    ae = glorot_init_(AE(MNISTEncoder(64), MNISTDecoder(64)))
    z = ae.encoder(x)
    assert z.shape == (3, 64) and z.abs().max() <= 1
    out = ae(x)
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    assert (ae.encoder.fc1.bias == 0).all()


def test_actor_critic_lazy_and_explicit():
    a = Actor(32, 5)
    assert a(torch.zeros(4, 11)).shape == (4, 5)
    assert Critic(32, input_dim=16)(torch.zeros(4, 16)).shape == (4, 1)


def test_specs_rebuild_registered_networks():
    enc = MNISTEncoder(16)
    spec = model_spec(enc)
    assert spec == {"class": "MNISTEncoder", "config": {"latent_dim": 16}}
    assert isinstance(build_model(spec), MNISTEncoder)
    assert model_spec(torch.nn.Linear(2, 2)) is None
