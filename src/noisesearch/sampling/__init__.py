"""Samplers: noise-level schedules × solvers × noise injection, as pure steps with explicit noise."""

from noisesearch.sampling.noise import Churn
from noisesearch.sampling.registry import describe_sampler, make_sampler, register_sampler, sampler_names
from noisesearch.sampling.sampler import Sampler, StochasticSampler, sampler_from_dict
from noisesearch.sampling.schedules import FlowSchedule, KarrasSchedule
from noisesearch.sampling.solvers import Euler, EulerDDIM, Heun

__all__ = ["Churn", "Euler", "EulerDDIM", "FlowSchedule", "Heun", "KarrasSchedule", "Sampler", "StochasticSampler",
           "describe_sampler", "make_sampler", "register_sampler", "sampler_from_dict", "sampler_names"]
