#!/usr/bin/env python
"""Seed 000 end to end on real MNIST: classifier + autoencoder, CFRL fit, counterfactuals, figures and metrics.

    python examples/cfrl_mnist.py --out outputs/mnist_cfrl            # the `make demo` job (bundled defaults)

Writes to --out: ``metrics.json`` (classifier/AE quality, fit speed, validity / L1 / AE error / yNN for target 2 and
for random targets), ``target2.png`` and ``random_targets.png`` (originals / counterfactuals / differences),
``training.png`` (reward and losses over training), ``train_log.jsonl`` and the saved explainer ``explainer/``.
Trained classifier and autoencoder are cached (safetensors) under ``--cache-dir``, so a second run skips them.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from xrl.counterfactual import CounterfactualRL, JSONLLogger
from xrl.datasets import data_home, load_mnist
from xrl.metrics import counterfactual_report
from xrl.models import AE, MNISTClassifier, MNISTDecoder, MNISTEncoder, glorot_init_
from xrl.models.training import load_or_train, predict_batched, train_model
from xrl.render.counterfactual import plot_counterfactual_grid, plot_training_log

LATENT_DIM = 64


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="outputs/mnist_cfrl")
    ap.add_argument("--train-steps", type=int, default=2500, help="CFRL training steps (seed: 50000)")
    ap.add_argument("--clf-epochs", type=int, default=2)
    ap.add_argument("--ae-epochs", type=int, default=4)
    ap.add_argument("--coeff-sparsity", type=float, default=7.5)
    ap.add_argument("--act-noise", type=float, default=0.3,
                    help="exploration noise (seed default 0.1); 0.3 reached higher validity at short budgets here")
    ap.add_argument("--n-explain", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--cache-dir", default=None, help="trained classifier/AE cache (default: <data home>/models)")
    ap.add_argument("--mnist-dir", default=None, help="local folder with the MNIST idx files (else fetched)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache_dir) if args.cache_dir else data_home() / "models"
    cache.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    metrics: dict = {"args": vars(args), "torch_threads": torch.get_num_threads()}
    t_all = time.perf_counter()

    print("loading MNIST ...", flush=True)
    (X_train, y_train), (X_test, y_test) = load_mnist(args.mnist_dir)

    # black box -------------------------------------------------------------------------------------------------------
    classifier = MNISTClassifier(output_dim=10).to(device)
    t0 = time.perf_counter()
    metrics["classifier_cached"] = load_or_train(
        classifier, cache / f"mnist_classifier_e{args.clf_epochs}_s{args.seed}.safetensors",
        lambda: train_model(classifier, X_train, y_train, epochs=args.clf_epochs, seed=args.seed, device=device,
                            desc="classifier"))
    metrics["classifier_train_s"] = round(time.perf_counter() - t0, 1)
    test_pred = predict_batched(classifier, X_test).argmax(1)
    metrics["classifier_test_accuracy"] = float((test_pred == y_test).mean())
    print(f"classifier test accuracy {metrics['classifier_test_accuracy']:.4f}", flush=True)

    def predictor(X: np.ndarray) -> np.ndarray:  # the black box: numpy in, numpy out, no gradients
        with torch.no_grad():
            return classifier(torch.as_tensor(X, device=device)).cpu().numpy()

    # autoencoder ------------------------------------------------------------------------------------------------------
    torch.manual_seed(args.seed)
    ae = glorot_init_(AE(MNISTEncoder(LATENT_DIM), MNISTDecoder(LATENT_DIM))).to(device)
    t0 = time.perf_counter()
    metrics["ae_cached"] = load_or_train(
        ae, cache / f"mnist_ae{LATENT_DIM}_e{args.ae_epochs}_s{args.seed}.safetensors",
        lambda: train_model(ae, X_train, None, epochs=args.ae_epochs, seed=args.seed, device=device, desc="autoencoder"))
    metrics["ae_train_s"] = round(time.perf_counter() - t0, 1)
    rec = predict_batched(ae, X_test)
    metrics["ae_test_bce"] = float(F.binary_cross_entropy(torch.from_numpy(rec), torch.from_numpy(X_test)))
    metrics["classifier_accuracy_on_reconstructions"] = float((predict_batched(classifier, rec).argmax(1) == y_test).mean())
    print(f"autoencoder test BCE {metrics['ae_test_bce']:.4f}", flush=True)

    # CFRL -------------------------------------------------------------------------------------------------------------
    log_path = out / "train_log.jsonl"
    if log_path.exists():
        log_path.unlink()
    explainer = CounterfactualRL(predictor=classifier, encoder=ae.encoder, decoder=ae.decoder, latent_dim=LATENT_DIM,
                                 coeff_sparsity=args.coeff_sparsity, coeff_consistency=0, train_steps=args.train_steps,
                                 batch_size=100, act_noise=args.act_noise, seed=args.seed, device=device,
                                 callbacks=[JSONLLogger(log_path, every=50)])
    t0 = time.perf_counter()
    explainer.fit(X=X_train)
    fit_s = time.perf_counter() - t0
    metrics["cfrl_fit"] = {"train_steps": args.train_steps, "act_noise": args.act_noise, "wall_s": round(fit_s, 1),
                           "steps_per_s": round(args.train_steps / fit_s, 2)}
    explainer.save(out / "explainer", training_state=False)
    print(f"CFRL fit: {args.train_steps} steps in {fit_s:.0f}s", flush=True)

    # the seed's call: one target (2) broadcast to 200 test images
    explanation = explainer.explain(X_test[0:200], Y_t=np.array([2]), batch_size=100)
    orig, cf = explanation.data["orig"], explanation.data["cf"]
    metrics["target_2"] = counterfactual_report(orig["X"], cf["X"], cf["class"], explanation.data["target"],
                                                autoencoder=ae)
    plot_counterfactual_grid(orig["X"][:10], cf["X"][:10], orig["class"][:10, 0], cf["class"][:10, 0],
                             np.full(10, 2), out / "target2.png", title="CFRL counterfactuals, target class 2")

    # random targets different from the prediction, on n test images
    rng = np.random.default_rng(args.seed)
    X_e = X_test[:args.n_explain]
    pred_e = test_pred[:args.n_explain]
    targets = (pred_e + rng.integers(1, 10, size=len(X_e))) % 10
    t0 = time.perf_counter()
    explanation = explainer.explain(X_e, Y_t=targets, batch_size=100)
    explain_s = time.perf_counter() - t0
    cf = explanation.data["cf"]
    ref = slice(0, 10000)
    metrics["random_targets"] = counterfactual_report(
        X_e, cf["X"], cf["class"], targets, autoencoder=ae, X_ref=X_train[ref],
        y_ref=predict_batched(classifier, X_train[ref]).argmax(1), k=5)
    metrics["random_targets"]["explain_images_per_s"] = round(len(X_e) / explain_s, 1)
    metrics["reference_ae_reconstruction_mse_of_test_images"] = float(((rec - X_test) ** 2).reshape(len(X_test), -1)
                                                                        .mean(1).mean())
    plot_counterfactual_grid(X_e[:10], cf["X"][:10], pred_e[:10], cf["class"][:10, 0], targets[:10],
                             out / "random_targets.png", title="CFRL counterfactuals, random targets")
    plot_training_log(log_path, out / "training.png")
    metrics["total_wall_s"] = round(time.perf_counter() - t_all, 1)
    with open(out / "metrics.json", "w") as f:
        json.dump(metrics, f, indent=1)
    print(json.dumps({k: metrics[k] for k in ("classifier_test_accuracy", "cfrl_fit", "target_2", "random_targets")},
                     indent=1))
    print(f"wrote {out}/metrics.json and figures", flush=True)
    return metrics


if __name__ == "__main__":
    main()
