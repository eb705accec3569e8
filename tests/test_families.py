"""The particle, value-decoding, evolutionary and budget-forcing families (smc, svdd, evo, rbf) on the analytic
toy of test_search_toy (Gaussian data, its exact denoiser, brightness), where each reduces to a known search."""

import pytest
import torch
from test_search_toy import DETERMINISTIC, toy_problem

from noisesearch import NoiseSearchError, get_algorithm
from noisesearch.rng import SampleGenerators
from noisesearch.search.base import inverse_cdf
from noisesearch.search.smc import resampling_uniforms


def mean_reward(name, sampler=None, **params):
    problem = toy_problem() if sampler is None else toy_problem(sampler=sampler)
    return get_algorithm(name, **params).run(problem).rewards.mean().item()


def test_systematic_resampling_keeps_every_particle_under_equal_weights_and_collapses_on_one():
    gens = SampleGenerators([0, 1, 2])
    u = resampling_uniforms(gens, 5, "systematic")
    assert torch.equal(inverse_cdf(torch.full((3, 5), 0.2, dtype=torch.float64), u.double()),
                       torch.arange(5).expand(3, 5))
    one_hot = torch.zeros(3, 5).index_fill_(1, torch.tensor([3]), 1.0)
    assert torch.equal(inverse_cdf(one_hot, resampling_uniforms(gens, 5, "multinomial")), torch.full((3, 5), 3))


def test_smc_without_tilt_is_best_of_k_and_steering_beats_it():
    """λ = 0 with systematic resampling leaves every particle its own trajectory (best-of-K in distribution: the
    draws differ); a strong tilt with resampling after every step finds brighter images at the same NFE."""
    untilted = mean_reward("smc", particles=8, inverse_temperature=0.0, resampling="systematic")
    assert abs(untilted - mean_reward("best_of_n", N=8)) < 0.02
    assert mean_reward("smc", particles=8, inverse_temperature=50.0, resample_every=1) > untilted + 0.015


def test_svdd_argmax_is_eps_greedy_with_one_global_iteration_and_infinite_alpha_is_naive():
    svdd = get_algorithm("svdd", candidates=4).run(toy_problem())
    eps = get_algorithm("eps_greedy", N=4, K=1, eps=1.0).run(toy_problem())
    assert torch.equal(svdd.images, eps.images) and torch.equal(svdd.nfe, eps.nfe)
    naive = mean_reward("naive")
    assert abs(mean_reward("svdd", candidates=4, alpha=1e6) - naive) < 0.02  # a uniform draw among the M candidates
    assert svdd.rewards.mean().item() > naive + 0.1


def test_evo_without_evolution_steps_is_best_of_n_and_never_loses_its_first_generation():
    alone = get_algorithm("evo", population=[8], evolution_steps=[]).run(toy_problem(sampler=DETERMINISTIC))
    bon = get_algorithm("best_of_n", N=8).run(toy_problem(sampler=DETERMINISTIC))
    assert torch.equal(alone.images, bon.images) and torch.equal(alone.nfe, bon.nfe)
    evolved = get_algorithm("evo", population=[8, 8, 8], evolution_steps=[0, 3]).run(toy_problem(sampler=DETERMINISTIC))
    assert bool((evolved.rewards >= alone.rewards).all())  # the same first generation, elites kept
    assert evolved.rewards.mean() > alone.rewards.mean() + 0.01


def test_rbf_spends_exactly_its_target_nfe_and_at_its_minimum_is_naive():
    result = get_algorithm("rbf", target_nfe=100).run(toy_problem())
    assert result.nfe.tolist() == [100] * 16
    sampler = toy_problem().sampler
    minimum = get_algorithm("rbf", target_nfe=1, init_particles=1)
    with pytest.raises(NoiseSearchError, match="raise target_nfe to at least 19"):
        minimum.nfe_formula(sampler)
    rbf = get_algorithm("rbf", target_nfe=19, init_particles=1).run(toy_problem())
    naive = get_algorithm("naive").run(toy_problem())
    assert torch.equal(rbf.images, naive.images) and torch.equal(rbf.nfe, naive.nfe)


def test_rbf_rolls_over_what_an_accepted_particle_saves():
    """Per condition, a step's particles are its quota plus what the previous step left; the trace shows it."""
    algo = get_algorithm("rbf", target_nfe=100, init_particles=2)
    sampler = toy_problem().sampler
    per_step, extra, _ = algo.quota(sampler)
    trace = algo.run(toy_problem()).trace
    searched = algo.searched_steps(sampler)
    for c in range(16):
        quota = per_step
        for i in searched:
            at = (trace.condition == c) & (trace.step == i)
            drawn = int(at.sum())
            quota += extra * (i == searched[-1])
            assert 1 <= drawn <= quota
            accepted = bool(trace.changed[at][-1]) and i != searched[-1]
            assert drawn == quota or accepted  # stopping early means the last particle beat the incumbent
            quota = per_step + quota - drawn


@pytest.mark.parametrize("name, params, message", [
    ("smc", {"potential": "sum"}, "potential must be one of max, add, difference"),
    ("smc", {"ess_threshold": 1.5}, "ess_threshold must lie in"),
    ("smc", {"resampling": "stratified"}, "resampling must be one of"),
    ("svdd", {"alpha": -1.0}, "alpha must be a non-negative"),
    ("evo", {"population": [4, 2], "evolution_steps": [0, 3]}, "one size more than evolution_steps"),
    ("evo", {"population": "4,x"}, "population must be a list of integers"),
    ("evo", {"elites": 5}, "elites must be an integer from 0"),
    ("evo", {"evolution_steps": [3, 3, 5, 6]}, "increasing sampler steps"),
    ("rbf", {"target_nfe": 0}, "target_nfe must be an integer of at least 1"),
])
def test_bad_parameters_are_one_line_errors(name, params, message):
    with pytest.raises(NoiseSearchError, match=message):
        get_algorithm(name, **params)
