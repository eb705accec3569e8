"""Noise schedules and the stochastic EDM sampler."""

from noisesearch.sampling.edm import EDMSampler
from noisesearch.sampling.schedule import EDMSchedule

__all__ = ["EDMSampler", "EDMSchedule"]
