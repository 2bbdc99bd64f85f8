"""DreamerV2-style world models on MinAtar and example-based explanations of their latent state.

Model: `DreamerAgent` (ObsEncoder/ObsDecoder, discrete `RSSM` with typed `RSSMDiscState(logit, stoch, deter)`,
reward/discount heads, actor `ActionModel` and critic), configured by `MinAtarConfig` / `cpu_config`; trained by
``python -m xrl.worldmodel.train``; run as in the seed notebook through `Evaluator`. Explanation: `explain_latents`.
"""
from .agent import DreamerAgent, evaluate, random_returns
from .evaluator import Evaluator
from .config import MinAtarConfig, RSSMInfo, cpu_config
from .networks import ActionModel, DenseModel, ObsDecoder, ObsEncoder
from .rssm import RSSM, RSSMDiscState, kl_balance_loss, straight_through_sample

__all__ = ["DreamerAgent", "Evaluator", "evaluate", "random_returns", "MinAtarConfig", "RSSMInfo", "cpu_config",
           "ActionModel", "DenseModel", "ObsDecoder", "ObsEncoder", "RSSM", "RSSMDiscState", "kl_balance_loss",
           "straight_through_sample"]
