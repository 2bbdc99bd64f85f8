"""Understanding RL Vision (Hilton et al. 2020, https://distill.pub/2020/understanding-rl-vision) in PyTorch.

Mirrors lucid's ``rl_util`` / seed 003: :func:`get_acts`, :func:`get_attr`, :class:`LayerNMF` (dataset and feature
visualization of NMF directions), model editing (:func:`project_out_direction`, :class:`ParameterEditor`,
:func:`get_var`) and :func:`compare_rollouts`; the layer helpers (:func:`get_model_layers`, :func:`get_abbreviator`)
and pictures (:func:`zoom_to`, :func:`show`, :func:`conv2d`, :func:`norm_filter`) are re-exported so that the seed's
imports map to one module.
"""
from xrl.models.impala import ImpalaModel
from xrl.models.policy import CategoricalPolicyGM
from xrl.hooks import get_abbreviator, get_layer, get_model_layers, layer_names
from xrl.render.images import attribution_to_rgb, conv2d, norm_filter, show, zoom_to
from xrl.vision.core import ReceptiveField, get_acts, get_attr, receptive_field
from xrl.vision.edit_experiment import EpisodeOutcomes, paired_comparison, play_levels, run_saw_edit_experiment
from xrl.vision.editing import ParameterEditor, find_consumer, get_var, project_out_direction
from xrl.vision.layer_nmf import LayerNMF, argmax_nd
from xrl.vision.rollouts import EVENTS, breakout_ball_lost, compare_rollouts, freeway_collisions

__all__ = ["get_acts", "get_attr", "LayerNMF", "argmax_nd", "ReceptiveField", "receptive_field", "get_var",
           "ParameterEditor", "find_consumer", "project_out_direction", "compare_rollouts", "freeway_collisions",
           "breakout_ball_lost", "EVENTS", "get_model_layers", "get_abbreviator", "get_layer", "layer_names",
           "zoom_to", "show", "conv2d", "norm_filter", "attribution_to_rgb", "CategoricalPolicyGM", "ImpalaModel",
           "EpisodeOutcomes", "paired_comparison", "play_levels", "run_saw_edit_experiment"]
