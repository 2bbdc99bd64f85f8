"""HeAE: head layout, training lowers the loss, registry rebuild gives identical outputs."""
import numpy as np
import torch

from xrl.models._registry import build_model, model_spec
from xrl.models.tabular import HeAE, HeAETrainConfig, TabularDecoder, TabularEncoder, heae_loss, train_heae
from xrl.preprocessing import TabularPreprocessor


def test_heads_latent_box_and_training():
    rng = np.random.default_rng(0)
    X = np.c_[rng.normal(size=(256, 2)), rng.integers(0, 3, 256), rng.integers(0, 2, 256)]
    pre = TabularPreprocessor(category_map={2: ["a", "b", "c"], 3: ["u", "v"]}).fit(X)
    torch.manual_seed(0)
    ae = HeAE(TabularEncoder(pre.model_dim, 32, 4), TabularDecoder(4, 32, pre.head_dims))
    Z = torch.from_numpy(pre.transform(X))
    z = ae.encoder(Z)
    assert z.shape == (256, 4) and z.abs().max() <= 1
    heads = ae(Z)
    assert [h.shape[1] for h in heads] == [2, 3, 2]
    with torch.no_grad():
        before, parts = heae_loss(heads, Z, pre.n_num, pre.cat_sizes_)
    assert set(parts) == {"num_mse", "cat_ce"}
    cfg = HeAETrainConfig(epochs=15, batch_size=64, log_every=0)
    train_heae(ae, Z, pre.n_num, pre.cat_sizes_, cfg)
    with torch.no_grad():
        after, _ = heae_loss(ae(Z), Z, pre.n_num, pre.cat_sizes_)
    assert float(after) < float(before) and len(cfg.history) == 15 and not ae.training


def test_registry_rebuild_and_categorical_only():
    enc, dec = TabularEncoder(5, 8, 3), TabularDecoder(3, 8, [2, 3])
    enc2, dec2 = build_model(model_spec(enc)), build_model(model_spec(dec))
    enc2.load_state_dict(enc.state_dict())
    dec2.load_state_dict(dec.state_dict())
    x = torch.randn(4, 5)
    assert torch.equal(enc(x), enc2(x))
    assert all(torch.equal(a, b) for a, b in zip(dec(enc(x)), dec2(enc2(x))))
    loss, parts = heae_loss(dec(enc(x)), torch.eye(5)[[0, 1, 2, 3]], 0, [2, 3])
    assert set(parts) == {"cat_ce"} and torch.isfinite(loss)
