"""noisesearch: test-time scaling of diffusion models by searching over their noise."""

from noisesearch.api import draw_labels, sample_seeds, search
from noisesearch.backends import load_model
from noisesearch.errors import BudgetExceeded, NoiseSearchError
from noisesearch.problem import Problem
from noisesearch.rewards import get_reward, register_reward
from noisesearch.sampling import EDMSampler, EDMSchedule
from noisesearch.search import SearchAlgorithm, get_algorithm, register_algorithm
from noisesearch.types import SearchResult

__version__ = "0.1.0"
__all__ = [
    "BudgetExceeded", "draw_labels", "EDMSampler", "EDMSchedule", "NoiseSearchError", "Problem", "SearchAlgorithm",
    "SearchResult", "get_algorithm", "get_reward", "load_model", "register_algorithm", "register_reward",
    "sample_seeds", "search",
]
