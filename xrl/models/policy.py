"""Seed 003's policy name: ``CategoricalPolicyGM(embedder=ImpalaModel(in_channels=3), action_size=15)``.

In the seed (``reward_preprocessing.ext.notebook_util``) the IMPALA policy is built from an embedder and an action
count and then loaded with a state dict whose keys are ``embedder.block1.conv.weight``, ..., ``fc_policy.weight``,
``fc_value.weight``. :class:`CategoricalPolicyGM` is :class:`~xrl.models.ImpalaCNN` built that way: same layer
names, same ``forward`` (``(logits [B, A], value [B])``), so the seed's cells run unchanged.
"""
from __future__ import annotations

from typing import Sequence

from torch import nn

from .._validation import error_message
from .impala import ImpalaCNN, ImpalaModel


class CategoricalPolicyGM(ImpalaCNN):
    """An :class:`~xrl.models.ImpalaCNN` made from a given IMPALA ``embedder`` and ``action_size`` (seed 003's call).

    Parameters
    ----------
    embedder : ImpalaModel
        E.g. ``ImpalaModel(in_channels=3)`` for 64 x 64 RGB frames (CoinRun); the input size is the embedder's
        ``input_hw``.
    action_size : int
        Number of discrete actions (CoinRun: 15).
    action_names : list of str, optional

    Examples
    --------
    >>> model = CategoricalPolicyGM(embedder=ImpalaModel(in_channels=3), action_size=15)
    >>> sorted(model.state_dict())[:2]
    ['embedder.block1.conv.bias', 'embedder.block1.conv.weight']
    """

    def __init__(self, embedder: ImpalaModel, action_size: int, action_names: Sequence[str] | None = None):
        if not isinstance(embedder, ImpalaModel):
            raise TypeError(error_message("embedder", "an xrl.models.ImpalaModel", type(embedder).__name__,
                                          "build it with ImpalaModel(in_channels=3)"))
        channels = tuple(b.conv.out_channels for b in (embedder.block1, embedder.block2, embedder.block3))
        obs_shape = (embedder.block1.conv.in_channels, *getattr(embedder, "input_hw", (64, 64)))
        super().__init__(obs_shape, int(action_size), channels=channels, fc_dim=embedder.output_dim,
                         action_names=action_names)
        self.embedder = embedder   # the given module itself, as in the seed (same names, its weights)

    @property
    def graph_def(self) -> nn.Module:
        """The model itself: lucid code edits ``ParameterEditor(model.graph_def)``; here the editor takes the module."""
        return self
