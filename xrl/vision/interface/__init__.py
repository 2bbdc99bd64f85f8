"""The Understanding-RL-Vision interface: one command from an agent to an interactive offline page.

``build_interface("breakout", "outputs/interface/breakout")`` (or ``python -m xrl.vision.interface --agent breakout``)
rolls the agent out, fits NMF on value attributions of each conv block, attributes every frame, and writes one
``index.html`` that works opened from disk (Hilton et al. 2020, https://distill.pub/2020/understanding-rl-vision).

Pieces, in the order data flows: :mod:`.agent` (which agent and environment; checked before any work), :mod:`.layers`
(which layers), :mod:`.work` (the computation as independent work items: :func:`plan_work`, :func:`item_inputs`,
:func:`run_work_item`), :mod:`.page` (results -> data -> HTML; :func:`read_page_data`, :func:`validate_page_data`),
:mod:`.cli` (command-line flags). The page's HTML, CSS and JavaScript are package data in ``template/``.
"""
from .agent import AgentSource, check_agent_env, load_model, resolve_agent
from .build import build_interface, build_interface_timed, prepare_config
from .cli import add_cli_arguments, run_cli
from .layers import check_layers, conv_block_layers
from .page import SCHEMA, assemble_page, decode_maps, read_page_data, validate_page_data, write_page
from .work import (Attribution, FeatureVis, InterfaceConfig, NMFFit, Observations, Rollouts, item_inputs, plan_work,
                   reduce_attribution, run_work, run_work_item)

__all__ = ["build_interface", "build_interface_timed", "add_cli_arguments", "run_cli", "prepare_config",
           "AgentSource", "resolve_agent", "load_model", "check_agent_env", "conv_block_layers", "check_layers",
           "InterfaceConfig", "Rollouts", "Observations", "NMFFit", "FeatureVis", "Attribution", "plan_work",
           "item_inputs", "run_work_item", "run_work", "reduce_attribution", "SCHEMA", "assemble_page", "write_page",
           "read_page_data", "validate_page_data", "decode_maps"]
