"""Counterfactual explanations with reinforcement learning (CFRL): images (``CounterfactualRL``) and mixed tabular
data (``CounterfactualRLTabular``)."""
from .callbacks import CSVLogger, JSONLLogger, TensorBoardLogger
from .cfrl import (DEFAULT_BASE_PARAMS, Callback, CounterfactualRL, NormalActionNoise, Postprocessing, ReplayBuffer,
                   generate_empty_condition, get_classification_reward, get_hard_distribution, identity_function)
from .conditioning import TabularConstraints
from .explanation import Explanation
from .tabular import CounterfactualRLTabular, interval_reward

__all__ = ["CounterfactualRL", "CounterfactualRLTabular", "Callback", "Postprocessing", "ReplayBuffer",
           "NormalActionNoise", "DEFAULT_BASE_PARAMS", "Explanation", "CSVLogger", "JSONLLogger", "TensorBoardLogger",
           "TabularConstraints", "interval_reward", "identity_function", "generate_empty_condition",
           "get_classification_reward", "get_hard_distribution"]
