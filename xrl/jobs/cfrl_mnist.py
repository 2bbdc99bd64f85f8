"""Seed 000 end to end on real MNIST: black box + autoencoder, CFRL fit, counterfactuals, figures and metrics.

The classifier and autoencoder come bundled (``load_pretrained("mnist_classifier")`` / ``"mnist_autoencoder"``);
``retrain=True`` trains both from scratch first (about 5 minutes on 2 CPU cores), and ``save_models`` writes them
as bundle folders (how the bundled ones were made: see their README.md).

Files written to ``out``: ``metrics.json`` (classifier / autoencoder quality, fit speed, validity / L1 / L0 / AE
reconstruction error / yNN for target 2 and for random targets), ``target2.png`` and ``random_targets.png``
(originals / counterfactuals / differences), ``training.png`` (reward and losses over training), ``train_log.jsonl``
and the saved explainer ``explainer/``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import io
from .._utils import init_rng, resolve_device
from .._validation import check_choice, check_scalar, error_message
from ..pretrained import load_pretrained, save_reference_model

LATENT_DIM = 64
#: the command that produced the bundled MNIST models (recorded in their README)
BUNDLE_COMMAND = ("xrl cfrl mnist --retrain --clf-epochs 2 --ae-epochs 4 --seed 0 --train-steps 0 "
                  "--save-models xrl/checkpoints/mnist --out runs/mnist_models")


def train_models(X_train: np.ndarray, y_train: np.ndarray, *, clf_epochs: int = 2, ae_epochs: int = 4, seed: int = 0,
                 device: Any = None, progress: bool = True) -> tuple[nn.Module, nn.Module, dict[str, Any]]:
    """Train seed 000's classifier (cross-entropy, Adam 1e-3, batch 64) and autoencoder (BCE, Keras-style init).

    Returns ``(classifier, autoencoder, info)`` in eval mode; ``info`` holds the epochs, seed and training seconds.
    The global RNG is left as it was: the networks are initialised under ``xrl._utils.init_rng``.
    """
    from ..models import AE, MNISTClassifier, MNISTDecoder, MNISTEncoder, glorot_init_
    from ..models.training import train_model

    device = resolve_device(device)
    with init_rng(seed):
        classifier = MNISTClassifier(output_dim=10)
        ae = glorot_init_(AE(MNISTEncoder(LATENT_DIM), MNISTDecoder(LATENT_DIM)))
    classifier, ae = classifier.to(device), ae.to(device)
    t0 = time.perf_counter()
    train_model(classifier, X_train, y_train, epochs=clf_epochs, seed=seed, device=device, progress=progress,
                desc="classifier")
    clf_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    train_model(ae, X_train, None, epochs=ae_epochs, seed=seed, device=device, progress=progress, desc="autoencoder")
    ae_s = time.perf_counter() - t0
    info = {"clf_epochs": clf_epochs, "ae_epochs": ae_epochs, "seed": seed, "classifier_train_s": round(clf_s, 1),
            "ae_train_s": round(ae_s, 1)}
    return classifier.eval(), ae.eval(), info


def evaluate_models(classifier: nn.Module, ae: nn.Module, X_test: np.ndarray, y_test: np.ndarray) -> dict[str, float]:
    """Test accuracy of the classifier, test BCE of the autoencoder, and the classifier's accuracy on reconstructions."""
    from ..models.training import predict_batched

    rec = predict_batched(ae, X_test)
    return {"classifier_test_accuracy": float((predict_batched(classifier, X_test).argmax(1) == y_test).mean()),
            "ae_test_bce": float(F.binary_cross_entropy(torch.from_numpy(rec), torch.from_numpy(X_test))),
            "classifier_accuracy_on_reconstructions": float((predict_batched(classifier, rec).argmax(1)
                                                             == y_test).mean())}


def save_models(dest: str | Path, classifier: nn.Module, ae: nn.Module, info: dict[str, Any], command: str) -> Path:
    """Write ``dest/classifier`` and ``dest/autoencoder`` (safetensors + JSON + README.md with ``command``)."""
    dest = Path(dest)
    for name, module, what in (("classifier", classifier, "seed 000's MNIST CNN classifier (the black box)"),
                               ("autoencoder", ae, f"seed 000's MNIST autoencoder (latent {LATENT_DIM})")):
        folder = dest / name
        save_reference_model(folder, module, {**info, "command": command})
        # float32 weights: the classifier is 1.6 MB and the autoencoder 0.1 MB, no need for float16
        size_kb = (folder / "model.safetensors").stat().st_size / 1024
        scores = "\n".join(f"| {k} | {info[k]:.4f} |" for k in ("classifier_test_accuracy", "ae_test_bce",
                                                                 "classifier_accuracy_on_reconstructions") if k in info)
        (folder / "README.md").write_text(
            f"# Bundled model: mnist_{name}\n\n{what}, float32 weights ({size_kb:,.0f} KiB). Load it with\n"
            f"`xrl.pretrained.load_pretrained(\"mnist_{name}\")`.\n\n"
            f"Produced with this command, from the repository root (real MNIST, training set only; "
            f"classifier {info['clf_epochs']} epochs, autoencoder {info['ae_epochs']} epochs, Adam 1e-3, batch 64, "
            f"seed {info['seed']}):\n\n```\n{command}\n```\n\n"
            f"Measured on the 10,000 MNIST test images:\n\n| metric | value |\n|---|---|\n{scores}\n")
    return dest


def _plot_figures(out: Path, explainer, classifier, ae, X_train, X_test, test_pred, n_explain, seed, metrics):
    from ..metrics import counterfactual_report
    from ..models.training import predict_batched
    from ..render.counterfactual import plot_counterfactual_grid

    # the seed's call: one target (2) broadcast to 200 test images
    explanation = explainer.explain(X_test[0:200], Y_t=np.array([2]), batch_size=100)
    orig, cf = explanation.data["orig"], explanation.data["cf"]
    metrics["target_2"] = counterfactual_report(orig["X"], cf["X"], cf["class"], explanation.data["target"],
                                                autoencoder=ae)
    _close(plot_counterfactual_grid(orig["X"][:10], cf["X"][:10], orig["class"][:10, 0], cf["class"][:10, 0],
                                    np.full(10, 2), out / "target2.png", title="CFRL counterfactuals, target class 2"))
    # random targets different from the prediction
    rng = np.random.default_rng(seed)
    X_e, pred_e = X_test[:n_explain], test_pred[:n_explain]
    targets = (pred_e + rng.integers(1, 10, size=len(X_e))) % 10
    t0 = time.perf_counter()
    explanation = explainer.explain(X_e, Y_t=targets, batch_size=100)
    explain_s = time.perf_counter() - t0
    cf = explanation.data["cf"]
    ref = slice(0, min(10_000, len(X_train)))
    metrics["random_targets"] = counterfactual_report(
        X_e, cf["X"], cf["class"], targets, autoencoder=ae, X_ref=X_train[ref],
        y_ref=predict_batched(classifier, X_train[ref]).argmax(1), k=5)
    metrics["random_targets"]["explain_images_per_s"] = round(len(X_e) / explain_s, 1)
    _close(plot_counterfactual_grid(X_e[:10], cf["X"][:10], pred_e[:10], cf["class"][:10, 0], targets[:10],
                                    out / "random_targets.png", title="CFRL counterfactuals, random targets"))


def _close(fig) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


def run(out: str | Path, *, train_steps: int = 2500, n_explain: int = 1000, train_size: int | None = None,
        retrain: bool = False, clf_epochs: int = 2, ae_epochs: int = 4, coeff_sparsity: float = 7.5,
        act_noise: float = 0.3, seed: int = 0, device: Any = None, save_models_to: str | Path | None = None,
        command: str | None = None, mnist_dir: str | Path | None = None, progress: bool = True,
        accelerate: str | None = "channels_last") -> dict[str, Any]:
    """Run the MNIST CFRL job and return its metrics (also written to ``out/metrics.json``).

    Parameters
    ----------
    out : path
        Output folder (created).
    train_steps : int, default 2500
        CFRL training steps (the seed uses 50,000; 2,500 reach validity ~0.95 with ``act_noise=0.3``). 0 stops after
        the models (with ``retrain``/``save_models_to``: how the bundled models are made).
    n_explain : int, default 1000
        Test images explained with random targets different from the prediction.
    train_size : int, optional
        Use the first ``train_size`` training images for CFRL (default: all 60,000).
    retrain : bool, default False
        Train the classifier and autoencoder from scratch instead of loading the bundled ones.
    clf_epochs, ae_epochs : int
        Epochs when retraining.
    coeff_sparsity, act_noise : float
        CFRL's sparsity coefficient (seed: 7.5) and exploration noise (seed default 0.1; 0.3 reaches a higher validity
        at short budgets).
    seed : int
        Seed of everything random (network initialisation, CFRL, targets).
    device : str or torch.device, optional
        Default: CPU.
    save_models_to : path, optional
        With ``retrain``: write the new classifier and autoencoder as bundle folders here (``classifier/``,
        ``autoencoder/``) instead of ``out/models``.
    command : str, optional
        The command line to record in the bundle READMEs.
    mnist_dir : path, optional
        A folder with the four MNIST idx files (default: the xrl data cache, filled through pip).
    progress : bool, default True
        tqdm progress bars.
    accelerate : {"channels_last", "compile", None}, default "channels_last"
        How CFRL runs this job's classifier (:class:`CounterfactualRL`'s ``accelerate``: opt-in, checked against the
        eager module on the first batches, eager again if they disagree). The job opts in for its own classifier;
        ``None`` calls it eagerly as given.
    """
    from ..counterfactual import CounterfactualRL, JSONLLogger
    from ..datasets import load_mnist
    from ..models.training import predict_batched
    from ..render.counterfactual import plot_training_log

    check_scalar("train_steps", train_steps, int, low=0)
    check_scalar("n_explain", n_explain, int, low=10)
    check_choice("accelerate", accelerate, (None, "channels_last", "compile"))
    if train_size is not None:
        check_scalar("train_size", train_size, int, low=100)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(device)
    t_all = time.perf_counter()
    metrics: dict[str, Any] = {"job": "cfrl mnist", "seed": seed, "device": str(device), "retrain": retrain,
                               "torch_threads": torch.get_num_threads()}

    (X_train, y_train), (X_test, y_test) = load_mnist(mnist_dir)
    if save_models_to is not None and not retrain:
        raise ValueError(error_message("save_models_to", "None unless retrain=True", str(save_models_to),
                                       "the bundled models are saved already; pass retrain=True to train new ones"))
    if retrain:
        classifier, ae, info = train_models(X_train, y_train, clf_epochs=clf_epochs, ae_epochs=ae_epochs, seed=seed,
                                            device=device, progress=progress)
        info.update(evaluate_models(classifier, ae, X_test, y_test))
        models_dir = Path(save_models_to) if save_models_to is not None else out / "models"
        save_models(models_dir, classifier, ae, info, command or "xrl.jobs.cfrl_mnist.run(retrain=True)")
        metrics["models"] = {"source": f"trained now, saved to {models_dir}", **info}
    else:
        classifier = load_pretrained("mnist_classifier", device)
        ae = load_pretrained("mnist_autoencoder", device)
        metrics["models"] = {"source": "bundled (xrl.pretrained)",
                             **evaluate_models(classifier, ae, X_test, y_test)}
    if train_steps == 0:
        metrics["total_wall_s"] = round(time.perf_counter() - t_all, 1)
        io.save_json(out / "metrics.json", metrics)
        return metrics

    X_fit = X_train if train_size is None else X_train[:train_size]
    log_path = out / "train_log.jsonl"
    log_path.unlink(missing_ok=True)
    explainer = CounterfactualRL(predictor=classifier, encoder=ae.encoder, decoder=ae.decoder, latent_dim=LATENT_DIM,
                                 coeff_sparsity=coeff_sparsity, coeff_consistency=0, train_steps=train_steps,
                                 batch_size=100, act_noise=act_noise, seed=seed, device=device, progress=progress,
                                 accelerate=accelerate, callbacks=[JSONLLogger(log_path, every=max(1, min(50, train_steps // 20)))])
    t0 = time.perf_counter()
    explainer.fit(X=X_fit)
    fit_s = time.perf_counter() - t0
    metrics["cfrl_fit"] = {"train_steps": train_steps, "train_images": len(X_fit), "act_noise": act_noise,
                           "coeff_sparsity": coeff_sparsity, "wall_s": round(fit_s, 1),
                           "classifier_runs": getattr(explainer.black_box.call, "status", "eager"),
                           "steps_per_s": round(train_steps / fit_s, 2)}
    explainer.save(out / "explainer", training_state=False)
    test_pred = predict_batched(classifier, X_test[:max(200, n_explain)]).argmax(1)
    _plot_figures(out, explainer, classifier, ae, X_fit, X_test, test_pred, n_explain, seed, metrics)
    if log_path.is_file() and log_path.stat().st_size:
        _close(plot_training_log(log_path, out / "training.png"))
    metrics["total_wall_s"] = round(time.perf_counter() - t_all, 1)
    io.save_json(out / "metrics.json", metrics)
    return metrics


def summary(metrics: dict[str, Any]) -> str:
    """One line for a terminal: validity and L1 for random targets and target 2."""
    r, t = metrics.get("random_targets", {}), metrics.get("target_2", {})
    if not r:
        return json.dumps(metrics.get("models", {}))
    return (f"validity {r['validity']:.3f} (random targets, {r['n']} test images), {t['validity']:.3f} (target 2); "
            f"mean L1 {r['l1_mean']:.1f}; fit {metrics['cfrl_fit']['steps_per_s']} steps/s")
