import pytest
import torch
from conftest import make_problem, tiny_denoiser

from noisesearch import BudgetExceeded, NoiseSearchError, get_algorithm
from noisesearch.problem import padded_batches


def test_naive_and_best_of_n_nfe_with_default_18_steps(denoiser):
    naive = get_algorithm("naive").run(make_problem(denoiser, [1, 2], [0, 1], steps=18))
    assert naive.nfe.tolist() == [35, 35]
    bon = get_algorithm("best_of_n", N=4).run(make_problem(denoiser, [1, 2], [0, 1], steps=18))
    assert bon.nfe.tolist() == [140, 140]
    assert bon.nfe_per_image == 140.0


def test_classifier_free_guidance_costs_two_nfe_per_call():
    for w, per_call in [(0.0, 1), (1.0, 1), (2.5, 2)]:
        res = get_algorithm("naive").run(make_problem(tiny_denoiser(guidance=w), [4], [0], steps=5))
        assert res.nfe.tolist() == [9 * per_call]


def test_guidance_zero_ignores_the_label_and_guidance_one_does_not():
    uncond = tiny_denoiser(guidance=0.0)
    cond = tiny_denoiser(guidance=1.0)
    run = lambda d, label: get_algorithm("naive").run(make_problem(d, [label], [7], steps=4)).images  # noqa: E731
    assert torch.equal(run(uncond, 1), run(uncond, 8))
    assert not torch.equal(run(cond, 1), run(cond, 8))


def test_budget_error_is_raised_before_the_call_that_would_exceed_it(denoiser):
    problem = make_problem(denoiser, [1], [0], steps=6, nfe_budget=40)
    with pytest.raises(BudgetExceeded, match="budget of 40"):
        get_algorithm("best_of_n", N=4).run(problem)
    assert int(problem.nfe[0]) <= 40
    ok = get_algorithm("best_of_n", N=4).run(make_problem(denoiser, [1], [0], steps=6, nfe_budget=44))
    assert ok.nfe.tolist() == [44]


def test_padding_is_not_counted_as_nfe(denoiser):
    problem = make_problem(denoiser, [1, 2, 3], [0, 1, 2], steps=3, max_batch=8)
    res = get_algorithm("naive").run(problem)
    assert res.nfe.tolist() == [5, 5, 5]
    assert problem.padded_rows == 5 * 5  # each call of 3 rows was padded to 8


def test_same_seed_gives_bit_identical_images(denoiser):
    a = get_algorithm("best_of_n", N=2).run(make_problem(denoiser, [3, 5], [10, 11]))
    b = get_algorithm("best_of_n", N=2).run(make_problem(denoiser, [3, 5], [10, 11]))
    c = get_algorithm("best_of_n", N=2).run(make_problem(denoiser, [3, 5], [12, 13]))
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)


def test_batch_of_one_and_batch_of_eight_are_bit_identical(denoiser):
    labels, seeds = [3, 1, 4, 1, 5, 9, 2, 6], list(range(100, 108))
    full = get_algorithm("naive").run(make_problem(denoiser, labels, seeds))
    for k in range(8):
        one = get_algorithm("naive").run(make_problem(denoiser, [labels[k]], [seeds[k]]))
        assert torch.equal(one.images[0], full.images[k])


def test_max_batch_changes_results_only_by_float_rounding(denoiser):
    labels, seeds = [0, 1, 2, 3, 4], [0, 1, 2, 3, 4]
    a = get_algorithm("best_of_n", N=3).run(make_problem(denoiser, labels, seeds, max_batch=16))
    b = get_algorithm("best_of_n", N=3).run(make_problem(denoiser, labels, seeds, max_batch=7))
    assert torch.allclose(a.images, b.images, atol=1e-4)  # different call shapes: equal up to float rounding
    assert a.nfe.tolist() == b.nfe.tolist()


def test_padded_batches_chunks_pads_and_unpads():
    seen = []

    def fn(a, b):
        seen.append(a.shape[0])
        return a + b

    a, b = torch.arange(19.0), torch.ones(19)
    out = padded_batches(fn, [a, b], batch=8)
    assert torch.equal(out, a + 1)
    assert seen == [8, 8, 8]


@pytest.mark.parametrize("kwargs, message", [
    ({"max_batch": 0}, "positive integer"),
    ({"nfe_budget": 0}, "at least 1"),
])
def test_bad_problem_arguments_are_user_errors(denoiser, kwargs, message):
    with pytest.raises(NoiseSearchError, match=message):
        make_problem(denoiser, [1], [0], **kwargs)


def test_seed_count_must_match_conditions(denoiser):
    with pytest.raises(NoiseSearchError, match="one seed each"):
        make_problem(denoiser, [1, 2], [0])


def test_nan_reward_is_a_user_error(denoiser):
    problem = make_problem(denoiser, [1], [0])

    class NaNReward:
        name = "nan"

        def __call__(self, images, cond):
            return torch.full((images.shape[0],), float("nan"))

    problem.reward = NaNReward()
    with pytest.raises(NoiseSearchError, match="NaN"):
        get_algorithm("naive").run(problem)
