"""Adaptive search above `search/`: calibrated search schedules (probes, fits, allocator, the online learner)
and the adaptive ε-greedy algorithms that spend them. `search/` never imports this package; the calibration
and online drivers that run searches sit above the API, in `noisesearch.drivers`."""

from noisesearch.adaptive.algorithm import AdaptiveEpsGreedy, schedule_beam
from noisesearch.adaptive.allocation import expected_gain
from noisesearch.adaptive.config import METHODS, CalibrationConfig
from noisesearch.adaptive.online_algorithm import OnlineAdaptiveEpsGreedy

__all__ = ["METHODS", "AdaptiveEpsGreedy", "CalibrationConfig", "OnlineAdaptiveEpsGreedy", "expected_gain",
           "schedule_beam"]
