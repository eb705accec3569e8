"""Rewards: brightness, JPEG compressibility, classifier probability (verifier and evaluator)."""

from noisesearch.rewards import brightness, classifier, clip, compressibility, ensemble  # noqa: F401  (registration)
from noisesearch.rewards.registry import describe_reward, get_reward, register_reward, reward_names

__all__ = ["describe_reward", "get_reward", "register_reward", "reward_names"]
