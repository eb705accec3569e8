"""The embedded model under bfloat16 autocast: float32 outputs close to, not equal to, float32's; others refused."""

import pytest
import torch

from noisesearch import NoiseSearchError
from noisesearch.backends import EmbeddedDenoiser, load_backend_denoiser
from noisesearch.testing import tiny_denoiser


def test_bfloat16_autocast_returns_float32_close_to_the_float32_path():
    full = tiny_denoiser()
    half = EmbeddedDenoiser(full.model, dtype=torch.bfloat16)
    x, sigma, labels = torch.randn(4, 1, 28, 28), torch.full((4,), 2.0), torch.tensor([1, 2, 3, 4])
    a, b = full(x, sigma, labels), half(x, sigma, labels)
    assert b.dtype == torch.float32 and not torch.equal(a, b)
    assert torch.allclose(a, b, atol=0.1)


def test_float16_is_refused_on_the_embedded_backend_and_bfloat16_is_taken():
    with pytest.raises(NoiseSearchError, match="float32 or bfloat16, not float16"):
        load_backend_denoiser("embedded", dtype="float16")
    assert load_backend_denoiser("embedded", dtype="bfloat16").dtype == torch.bfloat16
