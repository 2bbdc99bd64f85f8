"""DreamerV2-style world models on MinAtar and example-based explanations of their latent state.

Model: `DreamerAgent` (ObsEncoder/ObsDecoder, discrete `RSSM` with typed `RSSMDiscState(logit, stoch, deter)`,
reward/discount heads, actor `ActionModel` and critic), configured by `MinAtarConfig` / `cpu_config`; trained by
``python -m xrl.worldmodel.train``; run as in the seed notebook through `Evaluator`; the bundled agent comes from
`load_pretrained`. Explanation: `explain_latents` (-> `LatentExplanation`), `relate_components`, and the figures
`plot_latents` / `plot_top_observations`.
"""
from .agent import DreamerAgent, DreamerPolicy, evaluate, random_returns
from .evaluator import Evaluator
from .config import MinAtarConfig, RSSMInfo, cpu_config
from .explain import LatentExplanation, explain_latents, relate_components, rollout_latents
from .networks import ActionModel, DenseModel, ObsDecoder, ObsEncoder
from .plot import plot_latents, plot_top_observations
from .pretrained import load_pretrained
from .rssm import RSSM, RSSMDiscState, kl_balance_loss, straight_through_sample

__all__ = ["DreamerAgent", "DreamerPolicy", "Evaluator", "evaluate", "random_returns", "MinAtarConfig", "RSSMInfo",
           "cpu_config", "ActionModel", "DenseModel", "ObsDecoder", "ObsEncoder", "RSSM", "RSSMDiscState",
           "kl_balance_loss", "straight_through_sample", "explain_latents", "LatentExplanation", "relate_components",
           "rollout_latents", "plot_latents", "plot_top_observations", "load_pretrained"]
