"""Agents to explain: an IMPALA CNN actor-critic, CleanRL-style PPO, SB3 policy loading, trajectories, GAE and
bundled trained checkpoints (MinAtar Freeway and Breakout, CoinRun)."""
from ..models.impala import ImpalaBlock, ImpalaCNN, ImpalaModel, ResidualBlock
from ..models.policy import CategoricalPolicyGM
from .bundled import BUNDLED_AGENTS, bundled_agent_dir, load_bundled_agent
from .checkpoint import load_agent, save_agent
from .evaluate import EvalResult, evaluate
from .gae import compute_gae
from .imitation import ExpertTrajectory, Transitions, flatten_trajectories, load_expert_trajs
from .ppo import PPOConfig, PPOResult, train_ppo
from .sb3 import SB3Policy, load_sb3_policy
from .trajectories import Trajectories, collect_trajectories, sample_observations

__all__ = ["ImpalaCNN", "CategoricalPolicyGM", "ImpalaModel", "ImpalaBlock", "ResidualBlock", "PPOConfig", "PPOResult", "train_ppo",
           "load_agent", "save_agent", "load_bundled_agent", "bundled_agent_dir", "BUNDLED_AGENTS", "evaluate",
           "EvalResult", "compute_gae", "load_sb3_policy", "SB3Policy", "Trajectories", "collect_trajectories",
           "sample_observations", "load_expert_trajs", "flatten_trajectories", "ExpertTrajectory", "Transitions"]
