"""noisesearch: test-time scaling of diffusion models by searching over their noise."""

from noisesearch import adaptive  # noqa: F401  (registers adaptive_eps_greedy; search/ registers the plain algorithms)
from noisesearch.api import make_problem, search
from noisesearch.backends import Backend, load_model, register_backend
from noisesearch.denoiser import Denoiser, DenoiserBase
from noisesearch.drivers import calibrate, search_online
from noisesearch.errors import BudgetExceeded, NoiseSearchError
from noisesearch.problem import Problem
from noisesearch.progress import ProgressEvent
from noisesearch.rewards import RemoteReward, get_reward, register_reward
from noisesearch.sampling import Sampler, make_sampler, register_sampler
from noisesearch.search import SearchAlgorithm, get_algorithm, register_algorithm
from noisesearch.seeds import draw_labels, sample_seeds
from noisesearch.types import SearchResult
from noisesearch.version import __version__

__all__ = [
    "Backend", "BudgetExceeded", "Denoiser", "DenoiserBase", "NoiseSearchError", "Problem", "ProgressEvent",
    "RemoteReward", "Sampler", "SearchAlgorithm", "SearchResult", "__version__", "calibrate", "draw_labels",
    "get_algorithm", "get_reward", "load_model", "make_problem", "make_sampler", "register_algorithm",
    "register_backend", "register_reward", "register_sampler", "sample_seeds", "search", "search_online",
]
