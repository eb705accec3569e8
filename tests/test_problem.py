import pytest
import torch
from conftest import make_problem, tiny_denoiser

from noisesearch import BudgetExceeded, NoiseSearchError, get_algorithm
from noisesearch.problem import padded_batches, row_batches
from noisesearch.testing import CallRecorder


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
    problem = make_problem(denoiser, [1, 2, 3], [0, 1, 2], steps=3, max_batch=8, batch_invariant=True)
    res = get_algorithm("naive").run(problem)
    assert res.nfe.tolist() == [5, 5, 5]
    assert problem.padded_rows == 5 * 5 + 5  # each call of 3 rows padded to 8, and the final reward call


def test_by_default_calls_carry_real_rows_only(denoiser):
    one = CallRecorder(denoiser)
    problem = make_problem(one, [1], [0], steps=3, max_batch=16)
    get_algorithm("best_of_n", N=4).run(problem)
    assert set(one.rows) == {4} and problem.padded_rows == 0  # one image, N = 4: 4 rows per call, not 16
    many = CallRecorder(denoiser)
    get_algorithm("best_of_n", N=4).run(make_problem(many, list(range(5)), list(range(5)), steps=3, max_batch=16))
    assert set(many.rows) == {10}  # 20 rows in two equal calls of at most 16


def test_batch_invariant_mode_pads_every_call_to_max_batch(denoiser):
    wrapped = CallRecorder(denoiser)
    problem = make_problem(wrapped, [1], [0], steps=3, max_batch=16, batch_invariant=True)
    get_algorithm("best_of_n", N=4).run(problem)
    assert set(wrapped.rows) == {16} and problem.padded_rows > 0


def test_same_seed_gives_bit_identical_images(denoiser):
    a = get_algorithm("best_of_n", N=2).run(make_problem(denoiser, [3, 5], [10, 11]))
    b = get_algorithm("best_of_n", N=2).run(make_problem(denoiser, [3, 5], [10, 11]))
    c = get_algorithm("best_of_n", N=2).run(make_problem(denoiser, [3, 5], [12, 13]))
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)


def test_batch_of_one_and_batch_of_eight_are_bit_identical_in_batch_invariant_mode(denoiser):
    labels, seeds = [3, 1, 4, 1, 5, 9, 2, 6], list(range(100, 108))
    full = get_algorithm("naive").run(make_problem(denoiser, labels, seeds, batch_invariant=True))
    for k in range(8):
        one = get_algorithm("naive").run(make_problem(denoiser, [labels[k]], [seeds[k]], batch_invariant=True))
        assert torch.equal(one.images[0], full.images[k])


def test_the_default_mode_is_bit_identical_for_the_same_command_and_close_to_batch_invariant(denoiser):
    labels, seeds = [3, 1, 4, 1, 5], list(range(100, 105))
    runs = [get_algorithm("naive").run(make_problem(denoiser, labels, seeds, **mode))
            for mode in ({}, {}, {"batch_invariant": True})]
    assert torch.equal(runs[0].images, runs[1].images)
    assert torch.allclose(runs[0].images, runs[2].images, atol=1e-4)


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


def test_row_batches_splits_into_equal_calls_without_padding():
    seen = []

    def fn(a):
        seen.append(a.shape[0])
        return a * 2

    a = torch.arange(19.0)
    assert torch.equal(row_batches(fn, [a], batch=8), a * 2) and seen == [7, 7, 5]
    seen.clear()
    assert torch.equal(row_batches(fn, [a[:4]], batch=8), a[:4] * 2) and seen == [4]


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


def test_a_denoiser_without_the_protocol_attributes_is_a_user_error():
    from noisesearch import Problem, get_reward

    class Bare:
        image_shape, nfe_per_call = (1, 4, 4), 1

        def __call__(self, x, sigma, cond):
            return x

    with pytest.raises(NoiseSearchError, match="lacks label_dim, latent, decode, default_sampler"):
        Problem(Bare(), get_reward("brightness"), torch.tensor([0]), [0])


def test_problem_defaults_to_the_denoisers_sampler(denoiser):
    from noisesearch import Problem, get_reward, make_sampler

    problem = Problem(denoiser, get_reward("brightness"), torch.tensor([1]), [0])
    assert problem.sampler == make_sampler("heun", 18) == denoiser.default_sampler()


def test_progress_callback_sees_start_every_nfe_and_end(denoiser):
    from noisesearch.progress import ProgressEvent

    events = []
    problem = make_problem(denoiser, [1, 2, 3], [0, 1, 2], steps=6, callback=events.append)
    result = get_algorithm("best_of_n", N=2).run(problem)
    assert events[0] == ProgressEvent("start", 3 * 2 * 11, "best_of_n")  # 3 images × N × (2·6 − 1) calls
    assert events[-1] == ProgressEvent("end")
    spent = [e.nfe for e in events[1:-1]]
    assert all(e.kind == "nfe" for e in events[1:-1]) and sum(spent) == int(result.nfe.sum()) == 66
    guided = make_problem(tiny_denoiser(guidance=2.0), [1], [0], steps=6, callback=events.append)
    events.clear()
    get_algorithm("naive").run(guided)
    assert events[0].nfe == 2 * 11 and sum(e.nfe for e in events[1:-1]) == 22  # guidance: 2 NFE per call


def test_progress_bars_follow_the_events():
    from noisesearch.progress import BarProgress, ProgressEvent, TqdmProgress

    show = TqdmProgress()
    show(ProgressEvent("start", 10, "x"))
    assert show.bar is not None and show.bar.total == 10
    show(ProgressEvent("nfe", 4))
    assert show.bar.n == 4
    show(ProgressEvent("end"))
    assert show.bar is None

    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    bar = Bar()
    follow = BarProgress(bar)
    for event in (ProgressEvent("start", 99), ProgressEvent("nfe", 3), ProgressEvent("nfe", 2), ProgressEvent("end")):
        follow(event)
    assert bar.n == 5


def test_seed_policy_keeps_the_kinds_of_runs_apart():
    import noisesearch
    from noisesearch import seeds

    assert seeds.sample_seeds(3, 2) == [3, 4] and noisesearch.sample_seeds is seeds.sample_seeds
    assert seeds.bench_seed(1, 2, 3) == 1_002_003
    calibration = seeds.calibration_seeds(0, 4)
    assert calibration[0] == seeds.CALIBRATION_SEED_BASE and calibration == sorted(set(calibration))
    assert max(seeds.bench_seed(999, 999, 999), seeds.sample_seeds(10**6, 1000)[-1]) < seeds.CALIBRATION_SEED_BASE
    assert seeds.probe_seeds([5, 6], 2) == [5 * seeds.PROBE_SEED_STRIDE + 3, 6 * seeds.PROBE_SEED_STRIDE + 3]
    labels = noisesearch.draw_labels(50, 7)
    assert labels == seeds.draw_labels(50, 7) and set(labels) <= set(range(10)) and len(set(labels)) > 1
    with pytest.raises(NoiseSearchError, match="non-negative"):
        seeds.sample_seeds(-1, 2)
