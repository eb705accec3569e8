"""Search algorithms over a diffusion sampler's noise, one per module, registered by name."""

from noisesearch.search import (  # noqa: F401  (registration)
    beam,
    best_of_n,
    evo,
    initial_noise,
    local,
    mcts,
    paths,
    rbf,
    smc,
    svdd,
)
from noisesearch.search.base import SearchAlgorithm
from noisesearch.search.registry import (
    algorithm_class,
    algorithm_names,
    algorithm_params,
    canonical_params,
    get_algorithm,
    register_algorithm,
)

__all__ = ["SearchAlgorithm", "algorithm_class", "algorithm_names", "algorithm_params", "canonical_params",
           "get_algorithm", "register_algorithm"]
