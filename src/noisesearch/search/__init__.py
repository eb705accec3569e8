"""Search algorithms over a diffusion sampler's noise, one per module, registered by name: every module of this
package is imported here, so adding an algorithm is adding its module (and its case in the contract tests)."""

import importlib
import pkgutil

from noisesearch.search.base import SearchAlgorithm
from noisesearch.search.registry import (
    algorithm_class,
    algorithm_names,
    algorithm_params,
    canonical_params,
    get_algorithm,
    register_algorithm,
)

for _module in pkgutil.iter_modules(__path__):  # registration
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["SearchAlgorithm", "algorithm_class", "algorithm_names", "algorithm_params", "canonical_params",
           "get_algorithm", "register_algorithm"]
