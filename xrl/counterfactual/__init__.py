"""Counterfactual explanations with reinforcement learning (CFRL; Samoilescu et al. 2021): images and any data one
autoencoder reads (``CounterfactualRL``), mixed tabular data (``CounterfactualRLTabular``), alibi's API."""
from .buffer import NormalActionNoise, ReplayBuffer
from .callbacks import CSVLogger, JSONLLogger, TensorBoardLogger
from .cfrl import Callback, CounterfactualRL, Postprocessing
from .conditioning import TabularConstraints
from .config import (DEFAULT_BASE_PARAMS, CFRLConfig, generate_empty_condition, get_classification_reward,
                     get_hard_distribution, identity_function)
from .explanation import Explanation
from .tabular import CounterfactualRLTabular, interval_reward

__all__ = ["CounterfactualRL", "CounterfactualRLTabular", "CFRLConfig", "Callback", "Postprocessing", "ReplayBuffer",
           "NormalActionNoise", "DEFAULT_BASE_PARAMS", "Explanation", "CSVLogger", "JSONLLogger", "TensorBoardLogger",
           "TabularConstraints", "interval_reward", "identity_function", "generate_empty_condition",
           "get_classification_reward", "get_hard_distribution"]
