"""xrl: explain ML models with reinforcement learning, and explain RL agents.

Capabilities live in subpackages: ``xrl.counterfactual`` (CFRL), ``xrl.vision`` (Understanding RL Vision),
``xrl.worldmodel`` (DreamerV2 latent explanations), ``xrl.envs`` / ``xrl.agents`` (environments and agents to explain),
``xrl.datasets``, ``xrl.models``, ``xrl.metrics``; shared pieces: ``xrl.nmf``, ``xrl.hooks``, ``xrl.io``, ``xrl.render``.
"""

__version__ = "0.1.0"
