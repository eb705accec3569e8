"""Search algorithms on an analytic problem: Gaussian data, its exact denoiser, a brightness reward."""

import pytest
import torch

from noisesearch import DenoiserBase, Problem, get_algorithm, get_reward, make_sampler
from noisesearch.search.tracing import step_statistics

SD = 0.5


class GaussianDenoiser(DenoiserBase):
    """Exact D for data ~ N(0, SD² I): x·SD² / (sigma² + SD²)."""

    image_shape = (1, 4, 4)

    def __call__(self, x, sigma, cond):
        s = sigma.reshape(-1, 1, 1, 1)
        return x * SD**2 / (s**2 + SD**2)


STOCHASTIC = make_sampler("heun", 10)


def toy_problem(n=16, sampler=STOCHASTIC):
    return Problem(GaussianDenoiser(), get_reward("brightness"), torch.zeros(n, dtype=torch.long), list(range(n)),
                   sampler)


# With churn, every stochastic step replaces half of the noise variance, so x_T barely shapes the
# result and initial-noise search needs a deterministic sampler (S_churn = 0) to have something to find.
DETERMINISTIC = make_sampler("heun", 10, sigma_max=2.0, S_churn=0)


SEARCHERS = {
    "best_of_n": {"N": 8},
    "eps_greedy": {"N": 4, "K": 4},
    "zero_order": {"N": 4, "K": 4},
    "beam": {"N": 4, "B": 2},
    "mcts": {"N": 4, "S": 4},
    "paths": {"N": 4, "M": 2, "sigma_start": 5.0},
    "smc": {"particles": 8, "inverse_temperature": 50.0, "resample_every": 1},
    "svdd": {"candidates": 4},
    "evo": {"population": [8, 4, 4], "evolution_steps": [0, 4]},
    "rbf": {"target_nfe": 100},
}


@pytest.mark.parametrize("name", sorted(SEARCHERS))
def test_every_search_beats_naive_by_a_clear_margin(name):
    naive = get_algorithm("naive").run(toy_problem()).rewards.mean().item()
    searched = get_algorithm(name, **SEARCHERS[name]).run(toy_problem()).rewards.mean().item()
    assert searched > naive + 0.03, (name, naive, searched)


def test_initial_noise_search_beats_naive_with_a_deterministic_sampler():
    naive = get_algorithm("naive").run(toy_problem(sampler=DETERMINISTIC)).rewards.mean().item()
    algo = get_algorithm("zero_order_initial", N=4, K=3, lambda_=0.3)
    searched = algo.run(toy_problem(sampler=DETERMINISTIC)).rewards.mean().item()
    assert searched > naive + 0.03


def test_eps_one_only_takes_global_draws_and_eps_zero_only_local():
    trace = get_algorithm("eps_greedy", N=4, K=3, eps=1.0).run(toy_problem(4)).trace
    assert bool(trace.winner_global.all())
    trace = get_algorithm("zero_order", N=4, K=3).run(toy_problem(4)).trace
    assert not bool(trace.winner_global.any())


def test_eps_one_is_global_best_of_n_at_every_step():
    """With eps = 1 every iteration draws N fresh normals, so the incumbent after K iterations is the best
    of N·K independent draws, and the plain (non-elitist) variant keeps the last iteration's best."""
    elitist = get_algorithm("eps_greedy", N=2, K=3, eps=1.0).run(toy_problem(4)).trace
    for (c, s) in {(int(c), int(s)) for c, s in zip(elitist.condition, elitist.step, strict=True)}:
        at = (elitist.condition == c) & (elitist.step == s)
        assert elitist.incumbent_score[at][-1] == elitist.winner_score[at].max()
    plain = get_algorithm("eps_greedy", N=2, K=3, eps=1.0, elitism=False).run(toy_problem(4)).trace
    assert torch.equal(plain.incumbent_score, plain.winner_score)
    assert bool(plain.changed.all())


def test_step_statistics_reads_k_bar_and_global_win_rate():
    trace = get_algorithm("eps_greedy", N=4, K=5).run(toy_problem(4)).trace
    stats = step_statistics(trace)
    assert [s["step"] for s in stats] == make_sampler("heun", 10).searchable_steps()
    for s in stats:
        assert 0 <= s["global_win_rate"] <= 1
        assert s["k_bar"] != s["k_bar"] or 0 <= s["k_bar"] <= 4  # NaN or a valid mean of k - 1


def test_a_beam_of_incumbents_with_one_global_iteration_is_beam_search():
    """ε-greedy with B incumbents, K = 1 and ε = 1 draws N fresh noises per incumbent and keeps the B
    best, as beam (N, B) does: the same calls, rewards of the same distribution (the draws differ)."""
    problem = toy_problem()
    ours = get_algorithm("eps_greedy", N=4, K=1, eps=1.0, B=2).run(problem)
    beam = get_algorithm("beam", N=4, B=2).run(toy_problem())
    assert torch.equal(ours.nfe, beam.nfe)
    assert abs(ours.rewards.mean() - beam.rewards.mean()) < 0.02


def test_more_incumbents_find_more():
    one, three = (get_algorithm("eps_greedy", N=2, K=3, B=b).run(toy_problem()).rewards.mean().item() for b in (1, 3))
    assert three > one + 0.01, (one, three)


def test_search_api_takes_a_sampler_by_name_or_object_and_records_it():
    from noisesearch import make_problem, search
    from noisesearch.sampling import sampler_from_dict

    euler = make_sampler("euler", 10)
    args = {"reward": "brightness", "labels": [0, 1], "denoiser": GaussianDenoiser(), "evaluator": None}
    by_name = search(algorithm="eps_greedy", sampler="euler", steps=10, N=2, K=2, **args)
    formula = get_algorithm("eps_greedy", N=2, K=2).nfe_formula(euler)
    assert by_name.nfe.tolist() == [formula, formula] and by_name.config["nfe_formula_per_image"] == formula
    assert by_name.config["sampler"] == euler.to_dict() and sampler_from_dict(by_name.config["sampler"]) == euler
    assert "schedule" not in by_name.config
    by_object = search(algorithm="eps_greedy", sampler=euler, N=2, K=2, **args)
    assert torch.equal(by_object.images, by_name.images)
    problem, config = make_problem(sampler="heun", steps=4, **{k: v for k, v in args.items() if k != "evaluator"})
    assert problem.sampler == make_sampler("heun", 4) and config["sampler"] == problem.sampler.to_dict()
    with pytest.raises(TypeError):
        search("naive", "brightness")  # keyword-only
