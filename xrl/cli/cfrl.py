"""``xrl cfrl mnist`` and ``xrl cfrl adult``: counterfactual explanations with reinforcement learning (seeds 000/001)."""
from __future__ import annotations

import argparse

from ._common import add_common, apply_threads, command_line, device_of, finish


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("cfrl", help="counterfactuals with reinforcement learning (MNIST images, Adult tables)",
                           description="Counterfactual explanations with RL (CFRL; alibi's CounterfactualRL API).")
    jobs = group.add_subparsers(dest="job", required=True, metavar="{mnist,adult}")

    m = jobs.add_parser("mnist", help="seed 000: CFRL on MNIST with the bundled classifier and autoencoder",
                        description="Fit CFRL on MNIST (bundled classifier + autoencoder), explain test images for "
                        "target 2 and for random targets; write metrics.json, target2.png, random_targets.png, "
                        "training.png and the saved explainer.")
    add_common(m, out="outputs/cfrl_mnist", quick="150 CFRL steps on 5,000 training images, 200 test images")
    m.add_argument("--train-steps", type=int, default=2500, help="CFRL training steps (default: 2500; seed: 50000)")
    m.add_argument("--n-explain", type=int, default=1000, help="test images explained with random targets")
    m.add_argument("--train-size", type=int, default=None, help="use the first N training images (default: all)")
    m.add_argument("--coeff-sparsity", type=float, default=7.5)
    m.add_argument("--act-noise", type=float, default=0.3,
                   help="exploration noise (seed default 0.1; 0.3 reaches a higher validity at short budgets)")
    m.add_argument("--accelerate", choices=["channels_last", "compile", "none"], default="channels_last",
                   help="how CFRL runs the classifier: channels-last or torch.compile (checked against eager on the "
                   "first batches) or none (eager, as given); default channels_last")
    m.add_argument("--retrain", action="store_true", help="train the classifier and autoencoder from scratch "
                   "(about 5 minutes on 2 CPU cores) instead of loading the bundled ones")
    m.add_argument("--clf-epochs", type=int, default=2, help="classifier epochs with --retrain")
    m.add_argument("--ae-epochs", type=int, default=4, help="autoencoder epochs with --retrain")
    m.add_argument("--save-models", default=None, metavar="DIR",
                   help="with --retrain: write the new models as bundle folders here (default: OUT/models)")
    m.add_argument("--mnist-dir", default=None, help="folder with the MNIST idx files (default: the xrl data cache)")
    m.set_defaults(func=run_mnist)

    a = jobs.add_parser("adult", help="seed 001: CFRL on UCI Adult with a RandomForest black box",
                        description="Train a RandomForest and a heterogeneous autoencoder on UCI Adult, fit "
                        "CounterfactualRLTabular (immutable Marital Status / Relationship / Race / Sex, Age may only "
                        "increase), flip the black box's class for test rows; write counterfactuals.csv, table.html "
                        "(changed cells highlighted), table.md, metrics.json and the saved explainer.")
    add_common(a, out="outputs/cfrl_adult", quick="300 CFRL steps, 3 autoencoder epochs, 200 test rows")
    a.add_argument("--train-steps", type=int, default=10_000, help="CFRL training steps (alibi's example: 10000)")
    a.add_argument("--ae-epochs", type=int, default=50, help="heterogeneous autoencoder epochs")
    a.add_argument("--explain-n", type=int, default=1000, help="random test rows to flip")
    a.add_argument("--adult-dir", default=None, help="folder with adult.data (default: the xrl data cache)")
    a.set_defaults(func=run_adult)


def run_mnist(args: argparse.Namespace) -> int:
    from ..jobs import cfrl_mnist

    apply_threads(args)
    if args.quick:
        args.train_steps, args.n_explain = min(args.train_steps, 150), min(args.n_explain, 200)
        args.train_size = min(args.train_size or 5000, 5000)
    metrics = cfrl_mnist.run(args.out, train_steps=args.train_steps, n_explain=args.n_explain,
                             train_size=args.train_size, retrain=args.retrain, clf_epochs=args.clf_epochs,
                             ae_epochs=args.ae_epochs, coeff_sparsity=args.coeff_sparsity, act_noise=args.act_noise,
                             seed=args.seed, device=device_of(args), save_models_to=args.save_models,
                             command=command_line(args), mnist_dir=args.mnist_dir, progress=args.progress,
                             accelerate=None if args.accelerate == "none" else args.accelerate)
    return finish({"out": args.out, **{k: metrics[k] for k in ("models", "cfrl_fit", "target_2", "random_targets")
                                       if k in metrics}}, args.out, cfrl_mnist.summary(metrics))


def run_adult(args: argparse.Namespace) -> int:
    from ..jobs import cfrl_adult

    apply_threads(args)
    if args.quick:
        args.train_steps, args.ae_epochs = min(args.train_steps, 300), min(args.ae_epochs, 3)
        args.explain_n = min(args.explain_n, 200)
    metrics = cfrl_adult.run(args.out, train_steps=args.train_steps, ae_epochs=args.ae_epochs,
                             explain_n=args.explain_n, seed=args.seed, device=device_of(args),
                             adult_dir=args.adult_dir, progress=args.progress)
    return finish({"out": args.out, **metrics}, args.out, cfrl_adult.summary(metrics))
