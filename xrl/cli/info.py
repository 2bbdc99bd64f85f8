"""``xrl info``: versions, devices and the bundled models (the names :func:`xrl.pretrained.load_pretrained` takes)."""
from __future__ import annotations

import argparse
import json
import platform


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="versions, devices and bundled models (load_pretrained names), as JSON",
                       description="Print versions, devices and the bundled models as JSON.")
    p.set_defaults(func=run)


def info() -> dict:
    """What ``xrl info`` prints."""
    import numpy
    import torch

    import xrl
    from xrl.pretrained import available

    return {"xrl": xrl.__version__, "location": str(__import__("pathlib").Path(xrl.__file__).parent),
            "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "cuda_available": torch.cuda.is_available(), "torch_threads": torch.get_num_threads(),
            "pretrained": available()}


def run(args: argparse.Namespace) -> int:
    print(json.dumps(info(), indent=1))
    return 0
