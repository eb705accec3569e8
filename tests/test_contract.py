"""One contract suite over every registered algorithm, with small parameters."""

import pytest
import torch
from conftest import make_problem

from noisesearch import BudgetExceeded, EDMSchedule, get_algorithm
from noisesearch.search import algorithm_names
from noisesearch.search.step_schedule import SearchSchedule

TINY_PLAN = SearchSchedule.uniform(  # per-step K, eps and N for the 4 searchable steps of the 6-step schedule
    EDMSchedule(steps=6), K=[2, 0, 3, 1], eps=[1.0, 0.5, 0.3, 0.0], N=[2, 3, 2, 2],
    gains=((0.2, 0.1), (0.05,), (0.3, 0.2, 0.1, 0.05), (0.01, 0.0)))

CASES = {  # case name: (registered algorithm, small parameters)
    "naive": ("naive", {}),
    "best_of_n": ("best_of_n", {"N": 3}),
    "eps_greedy": ("eps_greedy", {"N": 2, "K": 3}),
    "eps_greedy_plain": ("eps_greedy", {"N": 2, "K": 2, "elitism": False}),
    "eps_greedy_full_step": ("eps_greedy", {"N": 2, "K": 2, "score_with": "step"}),
    "zero_order": ("zero_order", {"N": 2, "K": 3}),
    "zero_order_initial": ("zero_order_initial", {"N": 2, "K": 2}),
    "beam": ("beam", {"N": 2, "B": 2}),
    "mcts": ("mcts", {"N": 2, "S": 3}),
    "paths": ("paths", {"N": 2, "M": 2, "sigma_start": 5.0, "delta_f": 1, "delta_b": 2}),
    "eps_greedy_schedule": ("eps_greedy", {"search_schedule": TINY_PLAN}),
    "eps_greedy_window": ("eps_greedy_window", {"N": 2, "K_in": 3, "K_out": 0, "sigma_lo": 0.5, "sigma_hi": 10.0}),
    "adaptive": ("adaptive_eps_greedy", {"search_schedule": TINY_PLAN}),
    "adaptive_budget_patience": ("adaptive_eps_greedy",
                                 {"search_schedule": TINY_PLAN, "target_nfe": 30, "patience": 1}),
    "eps_greedy_beam_of_incumbents": ("eps_greedy", {"N": 2, "K": 2, "B": 3}),
    "adaptive_beam_budget_patience": ("adaptive_eps_greedy",
                                      {"search_schedule": TINY_PLAN, "target_nfe": 50, "patience": 1, "B": 2}),
}


def for_schedule(params: dict, schedule: EDMSchedule) -> dict:
    """A case's parameters for another sampler schedule: its search schedule's per-step values, cycled over
    that schedule's searchable steps."""
    plan = params.get("search_schedule")
    if plan is None:
        return params
    n = len(schedule.searchable_steps())

    def cycle(values):
        return [values[t % len(values)] for t in range(n)]

    retargeted = SearchSchedule.uniform(schedule, cycle(plan.K), cycle(plan.eps), cycle(plan.N),
                                        gains=tuple(cycle(plan.gains)))
    return {**params, "search_schedule": retargeted}


ELITIST = sorted(k for k, (name, params) in CASES.items() if get_algorithm(name, **params).params().get("elitism"))
LABELS, SEEDS = [2, 7, 1, 8, 2, 8, 1, 8], list(range(20, 28))


def test_every_registered_algorithm_has_a_case_here():
    assert {name for name, _ in CASES.values()} == set(algorithm_names())


def run(case, labels=LABELS, seeds=SEEDS, denoiser=None, **kwargs):
    name, params = CASES[case]
    algo = get_algorithm(name, **params)
    problem = make_problem(denoiser, labels, seeds, **kwargs)
    return algo, problem, algo.run(problem)


@pytest.mark.parametrize("name", sorted(CASES))
def test_metered_nfe_equals_documented_formula(denoiser, name):
    algo, problem, result = run(name, denoiser=denoiser)
    expected = algo.expected_calls(problem.schedule, result) * denoiser.nfe_per_call
    assert torch.equal(result.nfe, expected)


@pytest.mark.parametrize("name", sorted(CASES))
def test_hard_budget_is_never_exceeded(denoiser, name):
    algo, problem, result = run(name, denoiser=denoiser)
    need = int(result.nfe.max())
    tight = make_problem(denoiser, LABELS, SEEDS, nfe_budget=need - 1)
    with pytest.raises(BudgetExceeded):
        algo.run(tight)
    assert int(tight.nfe.max()) <= need - 1


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_seed_is_bit_identical(denoiser, name):
    a = run(name, denoiser=denoiser)[2]
    b = run(name, denoiser=denoiser)[2]
    assert torch.equal(a.images, b.images) and torch.equal(a.rewards, b.rewards)


@pytest.mark.parametrize("name", sorted(CASES))
def test_batch_of_one_equals_batch_of_eight(denoiser, name):
    full = run(name, denoiser=denoiser)[2]
    for k in [0, 5]:
        one = run(name, labels=[LABELS[k]], seeds=[SEEDS[k]], denoiser=denoiser)[2]
        assert torch.equal(one.images[0], full.images[k])
        assert torch.equal(one.rewards[0], full.rewards[k])


@pytest.mark.parametrize("name", sorted(CASES))
def test_returned_reward_is_the_reward_of_the_returned_image(denoiser, name):
    _, problem, result = run(name, denoiser=denoiser)
    assert torch.equal(result.rewards, problem.score_images(result.images[:, None])[:, 0])
    assert result.images.min() >= -1 and result.images.max() <= 1


@pytest.mark.parametrize("name", ELITIST)
def test_elitist_incumbent_never_gets_worse_within_a_step(denoiser, name):
    trace = run(name, denoiser=denoiser)[2].trace
    assert len(trace) > 0
    for c in range(len(LABELS)):
        for step in torch.unique(trace.step).tolist():
            at = (trace.condition == c) & (trace.step == step)
            incumbent, winners = trace.incumbent_score[at], trace.winner_score[at]
            assert torch.equal(incumbent, torch.cummax(winners, dim=0).values)


class LatentToyDenoiser:
    """A denoiser over (2, 4, 4) latents whose images are (1, 8, 8): decode averages the channels and
    upsamples; the exact Gaussian denoiser of data ~ N(0, 0.25 I) in latent space."""

    image_shape = (2, 4, 4)
    nfe_per_call = 1

    def __init__(self):
        self.decoded_rows = []

    def __call__(self, x, sigma, cond):
        return x * 0.25 / (sigma.reshape(-1, 1, 1, 1) ** 2 + 0.25)

    def decode(self, latents):
        self.decoded_rows.append(latents.shape[0])
        return torch.nn.functional.interpolate(latents.mean(1, keepdim=True), scale_factor=2.0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_latent_denoisers_are_decoded_for_rewards_and_results(name):
    denoiser = LatentToyDenoiser()
    algo, problem, result = run(name, denoiser=denoiser)
    assert result.images.shape == (len(LABELS), 1, 8, 8)
    assert torch.equal(result.rewards, problem.score_images(result.images[:, None])[:, 0])
    assert set(denoiser.decoded_rows) == {problem.max_batch}  # decoded in fixed-shape chunks
