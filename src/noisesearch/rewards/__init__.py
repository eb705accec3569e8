"""Rewards: brightness, JPEG compressibility, classifier probability (verifier and evaluator), CLIP, ImageNet
classifiers (DINOv2 linear, CLIP zero-shot), self-supervised verifiers, Ma et al.'s oracle verifiers (is_oracle,
the set-level fid_oracle), the remote reward (a client of a verifier service) and clients of other servers
(flow_grpo_server, vlm_judge)."""

from noisesearch.rewards import (  # noqa: F401  (registration)
    brightness,
    classifier,
    clip,
    compressibility,
    ensemble,
    flow_grpo_server,
    imagenet,
    oracles,
    remote,
    self_supervised,
    vlm_judge,
)
from noisesearch.rewards.registry import describe_reward, get_reward, register_reward, reward_names
from noisesearch.rewards.remote import RemoteReward

__all__ = ["RemoteReward", "describe_reward", "get_reward", "register_reward", "reward_names"]
