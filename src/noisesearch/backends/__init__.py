"""Adapters from model families to the D(x, sigma, cond) -> x0 convention, registered by name."""

from noisesearch.backends import diffusers_families, edm_network  # noqa: F401  (registration)
from noisesearch.backends.embedded import EmbeddedDenoiser, load_model
from noisesearch.backends.registry import (
    DTYPES,
    Backend,
    LoadRequest,
    backend_names,
    get_backend,
    load_backend_denoiser,
    register_backend,
)

__all__ = ["DTYPES", "Backend", "EmbeddedDenoiser", "LoadRequest", "backend_names", "get_backend",
           "load_backend_denoiser", "load_model", "register_backend"]
