"""Seed 002's ``Evaluator`` (``dreamerv2.training.evaluator``), which also loads the bundled world model by name.

``Evaluator(config, device).load_model(config, "freeway_pomdp")`` loads the world model shipped with xrl; any other
argument is a checkpoint directory (or its ``agent.safetensors`` / ``agent.json``) or a public DreamerV2 ``.pth``
file, as for :class:`xrl.worldmodel.agent.Evaluator`.
"""
from __future__ import annotations

import os

from .agent import Evaluator as _Evaluator

__all__ = ["Evaluator"]


class Evaluator(_Evaluator):
    """Runs an agent with the posterior state, as the seed does; ``load_model`` also takes bundled names.

    Examples
    --------
    >>> from xrl.worldmodel import Evaluator, MinAtarConfig
    >>> config = MinAtarConfig(env="freeway", obs_shape=(2, 10, 10), action_size=3)
    >>> evaluator = Evaluator(config, "cpu").load_model(config, "freeway_pomdp")   # the bundled world model
    >>> evaluator.RSSM._init_rssm_state(batch_size=1).deter.shape
    torch.Size([1, 200])
    """

    def load_model(self, config, model_path: str | os.PathLike) -> "Evaluator":
        from ..pretrained import PRETRAINED, pretrained_path

        name = os.fspath(model_path)
        if name in PRETRAINED and PRETRAINED[name].kind == "worldmodel" and not os.path.exists(name):
            model_path = pretrained_path(name)
        return super().load_model(config, model_path)
