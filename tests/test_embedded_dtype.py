"""The embedded model's network paths: bfloat16 autocast (float32 outputs close to, not equal to, float32's; float16
refused) and torch.compile (close to eager; refused by backends that do not compile)."""

import pytest
import torch

from noisesearch import NoiseSearchError, search
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


def test_compiled_network_is_close_to_eager_and_not_offered_where_unsupported():
    eager = tiny_denoiser()
    compiled = EmbeddedDenoiser(eager.model, compile=True)
    x, sigma, labels = torch.randn(3, 1, 28, 28), torch.full((3,), 2.0), torch.tensor([1, 2, 3])
    assert compiled.network is not compiled.model and eager.network is eager.model
    assert torch.allclose(compiled(x, sigma, labels), eager(x, sigma, labels), atol=1e-4)
    with pytest.raises(NoiseSearchError, match="the sd3 backend does not take --compile .*embedded, embedded_flow"):
        load_backend_denoiser("sd3", compile=True)
    with pytest.raises(NoiseSearchError, match="compile applies to a model the backend loads"):
        search(denoiser=eager, compile=True)
