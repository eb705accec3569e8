"""Adaptive search above `search/`: calibrated search schedules (probes, fits, allocator, calibration runner)
and the adaptive ε-greedy algorithm that spends them. `search/` never imports this package."""

from noisesearch.adaptive.algorithm import AdaptiveEpsGreedy, schedule_beam
from noisesearch.adaptive.calibrate import calibrate, calibrate_move, expected_gain
from noisesearch.adaptive.config import METHODS, CalibrationConfig
from noisesearch.adaptive.online_algorithm import OnlineAdaptiveEpsGreedy

__all__ = ["METHODS", "AdaptiveEpsGreedy", "CalibrationConfig", "OnlineAdaptiveEpsGreedy", "calibrate",
           "calibrate_move", "expected_gain", "schedule_beam"]
