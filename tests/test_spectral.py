"""Spectral Evolution Search and its Haar transform: exact inversion, energy kept, only the low band searched."""

import pytest
import torch
from test_search_toy import DETERMINISTIC, GaussianDenoiser, toy_problem

from noisesearch import Problem, get_algorithm, get_reward, make_sampler
from noisesearch.errors import NoiseSearchError
from noisesearch.search.haar import deepest_level, haar_merge, haar_split


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_haar_split_and_merge_are_inverse_and_keep_energy(level):
    x = torch.randn(3, 2, 8, 16, generator=torch.Generator().manual_seed(level), dtype=torch.float64)
    low, details = haar_split(x, level)
    assert low.shape == (3, 2, 8 // 2**level, 16 // 2**level) and len(details) == level
    assert torch.allclose(haar_merge(low, details), x, atol=1e-12)
    energy = low.square().sum() + sum(band.square().sum() for bands in details for band in bands)
    assert torch.allclose(energy, x.square().sum())  # orthonormal: white noise keeps a white low band


def test_one_level_is_the_scaled_sum_and_differences_of_each_2x2_block():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    low, [(h, v, d)] = haar_split(x, 1)
    assert low.item() == 5.0 and h.item() == -1.0 and v.item() == -2.0 and d.item() == 0.0


def test_the_level_fits_the_image():
    assert deepest_level(64, 64) == 4 and deepest_level(28, 28) == 2 and deepest_level(7, 8) == 0
    with pytest.raises(NoiseSearchError, match="needs sides divisible by 8"):
        haar_split(torch.zeros(1, 28, 28), 3)


class LinearImages(GaussianDenoiser):
    """The Gaussian toy with images that are its states scaled, never clamped: a linear map from x_T."""

    def decode(self, states):
        return states / 8


def test_ses_beats_naive_with_a_deterministic_sampler_and_leaves_the_detail_bands_alone():
    naive = get_algorithm("naive").run(toy_problem(sampler=DETERMINISTIC))
    ses = get_algorithm("ses", evaluations=20, popsize=5, elites=3)
    assert ses.run(toy_problem(sampler=DETERMINISTIC)).rewards.mean() > naive.rewards.mean() + 0.03
    # with a deterministic sampler the toy is linear (image = a·x_T), so the image's detail bands are the
    # condition's base noise's times a, wherever the search moved the low band
    problem = Problem(LinearImages(), get_reward("brightness"), torch.zeros(8, dtype=torch.long), list(range(8)),
                      DETERMINISTIC)
    searched = ses.run(problem)
    base = problem.generators().randn(*problem.image_shape)
    (moved, found), (start, given) = haar_split(searched.images.double(), 2), haar_split(base.double(), 2)
    ratio = torch.cat([(f / g).flatten() for fb, gb in zip(found, given, strict=True)
                       for f, g in zip(fb, gb, strict=True)])
    assert ratio.std() / ratio.mean().abs() < 1e-4
    assert not torch.allclose(moved / ratio.mean(), start)  # while the low band did move


def test_previews_cost_their_own_steps_and_the_final_run_its_full_ones():
    sampler = make_sampler("heun", 10, sigma_max=2.0, S_churn=0)
    algo = get_algorithm("ses", evaluations=6, popsize=3, elites=2, preview_steps=4)
    result = algo.run(toy_problem(n=2, sampler=sampler))
    assert int(result.nfe[0]) == algo.nfe_formula(sampler) == 6 * (2 * 4 - 1) + (2 * 10 - 1)
    full = get_algorithm("ses", evaluations=6, popsize=3, elites=2)
    assert full.nfe_formula(sampler) == 6 * 19  # the best full-length preview is the result


@pytest.mark.parametrize("params, message", [
    ({"evaluations": 0}, "evaluations must be an integer of at least 1"),
    ({"level": -1}, "level must be an integer from 0 to 8"),
    ({"preview_steps": 0}, "preview_steps must be an integer of at least 1"),
])
def test_bad_parameters_are_one_line_errors(params, message):
    with pytest.raises(NoiseSearchError, match=message):
        get_algorithm("ses", **params)
