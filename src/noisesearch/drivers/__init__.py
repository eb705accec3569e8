"""Library entry points above the API that run many searches: calibrating a search schedule and searching a
stream of conditions with an online learner kept in a state file."""

from noisesearch.drivers.calibrate import calibrate, calibrate_move
from noisesearch.drivers.online import search_online

__all__ = ["calibrate", "calibrate_move", "search_online"]
