"""Adapters from model families to the D(x, sigma, cond) -> x0 convention."""

from noisesearch.backends.embedded import EmbeddedDenoiser, check_labels, load_model

__all__ = ["EmbeddedDenoiser", "check_labels", "load_model"]
