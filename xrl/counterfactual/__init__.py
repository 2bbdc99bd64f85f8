"""Counterfactual explanations with reinforcement learning (CFRL): images (``CounterfactualRL``) and mixed tabular
data (``CounterfactualRLTabular``)."""
from .callbacks import CSVLogger, JSONLLogger, TensorBoardLogger
from .cfrl import (DEFAULT_BASE_PARAMS, Callback, CounterfactualRL, NormalActionNoise, Postprocessing, ReplayBuffer,
                   generate_empty_condition, get_classification_reward, get_hard_distribution, identity_function)
from .explanation import Explanation

__all__ = ["CounterfactualRL", "Callback", "Postprocessing", "ReplayBuffer", "NormalActionNoise",
           "DEFAULT_BASE_PARAMS", "Explanation", "CSVLogger", "JSONLLogger", "TensorBoardLogger",
           "identity_function", "generate_empty_condition", "get_classification_reward", "get_hard_distribution"]
