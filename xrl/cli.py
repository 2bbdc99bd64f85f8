"""The ``xrl`` command: ``xrl info`` (versions, bundled checkpoints) and ``xrl cfrl-mnist`` (the main job)."""
from __future__ import annotations

import argparse
import json
import platform
import runpy
import sys
from pathlib import Path


def _info() -> dict:
    import numpy
    import torch

    import xrl

    ckpt = Path(xrl.__file__).parent / "checkpoints"
    return {"xrl": xrl.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "cuda_available": torch.cuda.is_available(),
            "bundled_checkpoints": sorted(str(p.parent.relative_to(ckpt)) for p in ckpt.rglob("*.safetensors"))
            if ckpt.exists() else []}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="xrl", description="Explain ML models with RL, and explain RL agents.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info", help="versions and bundled checkpoints, as JSON")
    demo = sub.add_parser("cfrl-mnist", help="the MNIST CFRL example (seed 000); arguments go to the example",
                          add_help=False)
    demo.add_argument("rest", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    if args.cmd == "info":
        print(json.dumps(_info(), indent=1))
        return 0
    script = Path(__file__).resolve().parents[1] / "examples" / "cfrl_mnist.py"
    if not script.exists():
        print("xrl cfrl-mnist needs the examples/ folder of a source checkout", file=sys.stderr)
        return 2
    sys.argv = [str(script), *args.rest]
    runpy.run_path(str(script), run_name="__main__")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
