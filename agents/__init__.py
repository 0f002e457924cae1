"""On-policy agents on Lightning: the natural-gradient actor-critic and PPO, siblings on one base.

``AGENTS`` maps ``agent.name`` to the LightningModule class; checkpoints are Lightning's, with
ngac's own entries under ``checkpoint["ngac"]`` (format and version below).
"""

from .base import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, OnPolicyAgent
from .nac import NaturalGradientAgent
from .ppo import PPOAgent

AGENTS: dict[str, type[OnPolicyAgent]] = {"nac": NaturalGradientAgent, "ppo": PPOAgent}

__all__ = ["AGENTS", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "NaturalGradientAgent", "OnPolicyAgent", "PPOAgent"]
