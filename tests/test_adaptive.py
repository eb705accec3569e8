"""Search schedules, their calibration from traces, the budget allocator and the adaptive algorithms."""

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_problem
from test_contract import TINY_PLAN

from noisesearch import NoiseSearchError, cost, get_algorithm, make_sampler
from noisesearch.adaptive import CalibrationConfig
from noisesearch.adaptive.allocation import allocate_iterations, marginal_gain
from noisesearch.adaptive.fits import fit_binomial, fit_eps, fit_final_gains, fit_gains
from noisesearch.adaptive.gain_probe import FinalGains, probe_final_gains, probe_ladder
from noisesearch.cli import main
from noisesearch.search.step_schedule import SearchSchedule
from noisesearch.types import Trace

LABELS, SEEDS = [3, 1, 4, 1, 5], [50, 51, 52, 53, 54]
SIX = make_sampler("heun", 6)  # the sampler of conftest's make_problem


def synthetic_trace(incumbent: np.ndarray, baseline: np.ndarray, global_took: np.ndarray,
                    local_took: np.ndarray | None = None, sigmas=None) -> Trace:
    """A trace of S steps × C conditions × K iterations from per-(step, condition, iteration) arrays."""
    S, C, K = incumbent.shape
    local_took = np.zeros_like(global_took) if local_took is None else local_took
    sigmas = np.geomspace(10, 0.1, S) if sigmas is None else sigmas
    s, c, k = np.meshgrid(np.arange(S), np.arange(C), np.arange(1, K + 1), indexing="ij")
    changed = global_took | local_took
    changed[:, :, 0] = True
    mean = np.broadcast_to(baseline[:, :, None], (S, C, K))
    return Trace(condition=torch.tensor(c.ravel()), step=torch.tensor(s.ravel() + 2),
                 sigma=torch.tensor(np.asarray(sigmas)[s.ravel()], dtype=torch.float32),
                 iteration=torch.tensor(k.ravel()), winner_score=torch.tensor(incumbent.ravel(), dtype=torch.float32),
                 incumbent_score=torch.tensor(incumbent.ravel(), dtype=torch.float32),
                 winner_global=torch.tensor(global_took.ravel()), changed=torch.tensor(changed.ravel()),
                 mean_score=torch.tensor(mean.ravel(), dtype=torch.float32))


def test_fit_binomial_recovers_the_known_p():
    S, C, K = 3, 4, 10
    took = np.zeros((S, C, K), dtype=bool)
    took[0, :, 9] = True  # k − 1 = 9 for every condition: k̄ = 9, p = 0.9, K_t = 9
    took[1, :2, 3] = True  # k̄ = 3 for two conditions, 0 (no global take) for two: mean 1.5, K_t = 2
    # step 2: no global draw ever took the incumbent: p = 0, K_t = 1 (the floor)
    trace = synthetic_trace(np.zeros((S, C, K)), np.zeros((S, C)), took)
    assert fit_binomial(trace, K) == [9, 2, 1]


def test_fit_eps_follows_which_draws_improved():
    S, C, K = 3, 5, 8
    global_took = np.zeros((S, C, K), dtype=bool)
    local_took = np.zeros((S, C, K), dtype=bool)
    global_took[0, :, 1:] = True  # only global draws improve
    local_took[1, :, 1:] = True  # only local draws improve
    global_took[2, :, 1:4], local_took[2, :, 4:] = True, True  # 15 global, 20 local improvements
    eps = fit_eps(synthetic_trace(np.zeros((S, C, K)), np.zeros((S, C)), global_took, local_took), eps=0.4)
    assert eps[0] > 0.95 and eps[1] < 0.05
    expected = (16 / 0.4) / (16 / 0.4 + 21 / 0.6)  # the formula with one pseudo-count each
    assert eps[2] == pytest.approx(expected)
    only_global = synthetic_trace(np.zeros((S, C, K)), np.zeros((S, C)), global_took)
    assert fit_eps(only_global, eps=1.0) == [1.0] * S and fit_eps(only_global, eps=0.0) == [0.0] * S
    with pytest.raises(NoiseSearchError, match=r"\[0, 1\]"):
        fit_eps(only_global, eps=1.5)


def saturating(S=5, C=6, K=12, seed=0):
    """Incumbent curves baseline + A_s (1 − 0.7^k) with A largest at the middle step, plus noise."""
    rng = np.random.default_rng(seed)
    A = np.array([0.05, 0.2, 0.4, 0.2, 0.05])[:S]
    k = np.arange(1, K + 1)
    baseline = rng.normal(0.3, 0.05, (S, C))
    incumbent = baseline[:, :, None] + A[:, None, None] * (1 - 0.7 ** k) + rng.normal(0, 0.002, (S, C, K))
    return A, k, incumbent, baseline


def test_fit_gains_without_smoothing_is_the_mean_marginal_gain():
    A, k, incumbent, baseline = saturating()
    gains = np.array(fit_gains(synthetic_trace(incumbent, baseline, np.zeros(incumbent.shape, bool)), smooth=False))
    exact = A[:, None] * (0.3 * 0.7 ** (k - 1))
    assert np.abs(gains - exact).max() < 0.01
    assert (np.diff(gains, axis=1) <= 1e-12).all() and (gains >= 0).all()


def test_gp_fit_of_gains_is_close_to_the_truth_and_keeps_the_step_order():
    A, k, incumbent, baseline = saturating()
    gains = np.array(fit_gains(synthetic_trace(incumbent, baseline, np.zeros(incumbent.shape, bool))))
    exact = A[:, None] * (0.3 * 0.7 ** (k - 1))
    assert np.abs(gains - exact).max() < 0.03
    assert (np.diff(gains, axis=1) <= 1e-12).all() and (gains >= 0).all()
    first = gains[:, 0]
    assert first.argmax() == 2 and first[2] > first[1] > first[0]


def final_gains(gain: np.ndarray, ks, sem=None, sigmas=None) -> FinalGains:
    sigmas = np.geomspace(10, 0.1, len(gain)) if sigmas is None else sigmas
    return FinalGains(gain, np.full_like(gain, 0.001) if sem is None else sem, sigmas, tuple(ks), 0.5,
                      synthetic_trace(np.zeros((len(gain), 2, 1)), np.zeros((len(gain), 2)),
                                      np.zeros((len(gain), 2, 1), bool)))


def test_final_gains_are_read_between_the_probed_iteration_counts():
    probe = final_gains(np.array([[0.3, 0.5, 0.6], [0.1, 0.1, 0.1], [0.0, -0.02, 0.04]]), ks=(1, 2, 4))
    gains = np.array(fit_final_gains(probe, K=4, smooth=False))
    assert np.allclose(gains[0], [0.3, 0.2, 0.05, 0.05])  # cumulative 0.5 at k=2, 0.6 at k=4: linear between
    assert np.allclose(gains[1], [0.1, 0, 0, 0])
    assert (gains[2] >= 0).all() and (np.diff(gains[2]) <= 1e-12).all()  # noise made monotone, never negative


def test_gp_fit_of_final_gains_interpolates_a_sparse_ladder():
    A, k, incumbent, baseline = saturating()
    ks = probe_ladder(12)
    cumulative = (incumbent - baseline[:, :, None]).mean(axis=1)[:, [j - 1 for j in ks]]
    gains = np.array(fit_final_gains(final_gains(cumulative, ks), K=12))
    exact = A[:, None] * (0.3 * 0.7 ** (k - 1))
    assert ks == (1, 2, 5, 12) and np.abs(gains - exact).max() < 0.04
    assert gains[:, 0].argmax() == 2


def test_probe_counts_every_call_and_does_not_depend_on_the_batch(denoiser):
    sampler, ks, N = SIX, (1, 3), 2
    problem = make_problem(denoiser, LABELS[:2], SEEDS[:2])
    probe = probe_final_gains(problem, ks, N=N)
    searchable = sampler.searchable_steps()
    left = [sum(cost.search_step_calls(sampler, j, 0) for j in range(i + 1, sampler.steps)) for i in searchable]
    expected = cost.trajectory_calls(sampler) + sum(  # one climb of max(ks) per step, finished at every k
        N * max(ks) + sum(cost.search_step_calls(sampler, i, 0) - 1 + rest for _ in ks)
        for i, rest in zip(searchable, left, strict=True))
    assert problem.nfe.tolist() == [expected, expected]
    assert probe.gain.shape == (len(searchable), 2) and probe.ks == ks
    assert int(probe.trace.iteration.max()) == 3 and len(probe.trace) == 2 * 3 * len(searchable)
    alone = [probe_final_gains(make_problem(denoiser, [label], [seed]), ks, N=N)
             for label, seed in zip(LABELS[:2], SEEDS[:2], strict=True)]
    assert np.allclose(probe.gain, (alone[0].gain + alone[1].gain) / 2, atol=1e-6)
    assert abs(probe.gain).max() > 0


def test_probe_gains_at_each_k_are_those_of_a_probe_of_that_k_alone(denoiser):
    shared = probe_final_gains(make_problem(denoiser, LABELS[:3], SEEDS[:3]), (1, 2, 4), N=2)
    for j, k in enumerate((1, 2, 4)):
        alone = probe_final_gains(make_problem(denoiser, LABELS[:3], SEEDS[:3]), (k,), N=2)
        assert np.array_equal(shared.gain[:, j], alone.gain[:, 0]) and np.array_equal(shared.sem[:, j], alone.sem[:, 0])
    assert abs(shared.gain[:, 2] - shared.gain[:, 0]).max() > 0


def test_allocator_never_exceeds_the_budget_and_spends_it_where_gain_per_call_is_largest():
    rng = random.Random(0)
    for _ in range(200):
        S = rng.randint(1, 6)
        gains = [sorted((rng.random() for _ in range(rng.randint(1, 8))), reverse=True) for _ in range(S)]
        N = [rng.randint(1, 5) for _ in range(S)]
        first, then = [n - 1 for n in N], N
        extra = rng.randint(0, 80)
        K = allocate_iterations(gains, first, then, extra)
        spent = sum(first[t] + then[t] * (K[t] - 1) for t in range(S) if K[t])
        assert spent <= extra
        # nothing affordable is left undone: every step's next iteration costs more than what remains
        assert all(K[t] >= 1000 or (first[t] if K[t] == 0 else then[t]) > extra - spent for t in range(S))
    # one step with large gains takes everything before a step with small ones gets any
    K = allocate_iterations([[1.0] * 10, [0.01] * 10], [3, 3], [4, 4], 3 + 4 * 4)
    assert K == [5, 0]
    assert allocate_iterations([[0.5, 0.4], [0.3]], [1, 1], [2, 2], 100, min_gain=0.35) == [2, 0]
    with pytest.raises(NoiseSearchError):
        allocate_iterations([[1.0]], [1], [2], -1)


def test_marginal_gain_extends_a_row_by_its_decay_and_never_grows():
    row = [0.8, 0.4, 0.2, 0.1]
    assert marginal_gain(row, 2) == 0.4
    assert marginal_gain(row, 5) == pytest.approx(0.1 * (0.1 / 0.4) ** 0.5)  # geometric: halves per iteration
    assert marginal_gain([0.1, 0.1, 0.1, 0.1], 8) == pytest.approx(0.1 * 4 / 8)  # flat rows fall as 1/k
    assert marginal_gain([0.1, 0.2], 3) <= 0.2 and marginal_gain([], 1) == 0.0


def test_schedule_json_round_trip_and_table(tmp_path):
    path = tmp_path / "schedule.json"
    schedule = SearchSchedule(**{**TINY_PLAN.__dict__, "info": {"method": "gain", "reward": "brightness"}})
    schedule.save(path)
    loaded = SearchSchedule.load(path)
    assert loaded == schedule and loaded.info == schedule.info
    table = loaded.table().splitlines()
    assert len(table) == 1 + len(schedule.steps) and table[1].split()[:5] == ["1", "24.4083", "2", "1.000", "2"]
    path.write_text(json.dumps({**schedule.to_dict(), "K": [1, 2]}))
    with pytest.raises(NoiseSearchError, match="K has 2 entries for 4 steps"):
        SearchSchedule.load(path)
    path.write_text("{")
    with pytest.raises(NoiseSearchError, match="not valid JSON"):
        SearchSchedule.load(path)


def test_eps_greedy_with_a_uniform_schedule_is_plain_eps_greedy(denoiser):
    schedule = SearchSchedule.uniform(SIX, K=3, eps=0.4, N=2)
    a = get_algorithm("eps_greedy", N=2, K=3).run(make_problem(denoiser, LABELS, SEEDS))
    b = get_algorithm("eps_greedy", search_schedule=schedule).run(make_problem(denoiser, LABELS, SEEDS))
    assert torch.equal(a.images, b.images) and torch.equal(a.nfe, b.nfe)


def test_adaptive_searches_with_the_move_its_schedule_was_calibrated_for(denoiser):
    schedule = SearchSchedule.uniform(SIX, K=3, eps=0.4, N=2, info={"lambda_": 0.3})
    wide = get_algorithm("eps_greedy", N=2, K=3, lambda_=0.3).run(make_problem(denoiser, LABELS, SEEDS))
    adaptive = get_algorithm("adaptive_eps_greedy", search_schedule=schedule)
    assert adaptive.lambda_ == 0.3 and adaptive.params()["lambda_"] == 0.3
    assert torch.equal(adaptive.run(make_problem(denoiser, LABELS, SEEDS)).images, wide.images)
    assert get_algorithm("adaptive_eps_greedy", search_schedule=schedule, lambda_=0.1).lambda_ == 0.1
    assert get_algorithm("adaptive_eps_greedy", search_schedule=TINY_PLAN).lambda_ == 0.15


def test_window_searches_only_inside_its_sigma_range(denoiser):
    algo = get_algorithm("eps_greedy_window", N=2, K_in=3, K_out=1, sigma_lo=0.5, sigma_hi=10.0)
    schedule = algo.schedule_for(SIX)
    assert [(round(s, 2), k) for s, k in zip(schedule.sigmas, schedule.K, strict=True)] == [
        (24.41, 1), (5.84, 3), (0.97, 3), (0.09, 1)]
    result = algo.run(make_problem(denoiser, LABELS, SEEDS))
    assert set(torch.unique(result.trace.step).tolist()) == {1, 2, 3, 4}
    assert int(result.nfe[0]) == algo.nfe_formula(SIX) == 2 + 3 + 7 + 7 + 3 + 1


def test_adaptive_target_nfe_is_spent_but_never_exceeded(denoiser):
    for target in (11, 14, 30, 60):
        algo = get_algorithm("adaptive_eps_greedy", search_schedule=TINY_PLAN, target_nfe=target)
        result = algo.run(make_problem(denoiser, LABELS, SEEDS))
        assert int(result.nfe.max()) <= target
        assert int(result.nfe.min()) >= target - 3  # at most one iteration's cost (N_t <= 3) left unspent
    with pytest.raises(NoiseSearchError, match="below B = 1 plain sampler trajectories"):
        algo = get_algorithm("adaptive_eps_greedy", search_schedule=TINY_PLAN, target_nfe=10)
        algo.run(make_problem(denoiser, [1], [1]))


def test_patience_stops_steps_early_and_the_saved_calls_are_spent_later(denoiser):
    schedule = SearchSchedule.uniform(SIX, K=6, eps=0.4, N=2, gains=((0.1,) * 6,) * 4)
    fixed = get_algorithm("adaptive_eps_greedy", search_schedule=schedule).run(make_problem(denoiser, LABELS, SEEDS))
    stopping = get_algorithm("adaptive_eps_greedy", search_schedule=schedule, patience=1).run(
        make_problem(denoiser, LABELS, SEEDS))
    assert (stopping.nfe < fixed.nfe).all()
    budgeted = get_algorithm("adaptive_eps_greedy", search_schedule=schedule, target_nfe=40, patience=1).run(
        make_problem(denoiser, LABELS, SEEDS))
    trace = budgeted.trace
    last = trace.step == 4
    # the last searched step inherits what early stops saved: it runs more iterations than the first schedule gave it
    first_plan = allocate_iterations([[0.1] * 6] * 4, [1] * 4, [2] * 4, 40 - 11)
    assert int(trace.iteration[last].max()) > first_plan[-1]
    assert int(budgeted.nfe.max()) <= 40


def test_adaptive_needs_a_schedule_that_fits_the_sampler(denoiser, tmp_path):
    with pytest.raises(NoiseSearchError, match="noisesearch calibrate"):
        get_algorithm("adaptive_eps_greedy")
    with pytest.raises(NoiseSearchError, match="calibrate again"):
        get_algorithm("adaptive_eps_greedy", search_schedule=TINY_PLAN).run(make_problem(denoiser, [1], [1], steps=8))
    no_gains = SearchSchedule.uniform(SIX, K=1, eps=0.4, N=2)
    with pytest.raises(NoiseSearchError, match="calibrated gains"):
        get_algorithm("adaptive_eps_greedy", search_schedule=no_gains, target_nfe=50)
    with pytest.raises(NoiseSearchError, match="cannot read search schedule"):
        get_algorithm("adaptive_eps_greedy", search_schedule=str(tmp_path / "missing.json"))


def test_calibrate_fits_a_schedule_on_disjoint_conditions(denoiser, tmp_path):
    from noisesearch.drivers import calibrate

    def config(method):
        return CalibrationConfig(conditions=3, N=2, K=4, method=method, eps=0.4, moves=(), beams=(1,))

    schedule = calibrate("brightness", config("gain"), steps=6, denoiser=denoiser, evaluator=None)
    assert schedule.steps == tuple(SIX.searchable_steps())
    assert len(schedule.gains) == len(schedule.steps) and all(len(row) == 4 for row in schedule.gains)
    assert all(0 < e < 1 for e in schedule.eps)
    info = schedule.info
    assert info["calibration_nfe"] == 3 * cost.per_step_search_calls(SIX, 8)
    assert cost.schedule_calls(SIX, schedule) <= math.ceil(info["calibration_nfe_per_condition"] / 3)
    binomial = calibrate("brightness", config("binomial"), steps=6, denoiser=denoiser, evaluator=None)
    assert all(1 <= k <= 4 for k in binomial.K)
    final = calibrate("brightness", config("final"), steps=6, denoiser=denoiser)
    assert final.info["probed_k"] == [1, 2, 3, 4] and all(len(row) == 4 for row in final.gains)
    assert cost.schedule_calls(SIX, final) <= math.ceil(info["calibration_nfe_per_condition"] / 3)
    path = tmp_path / "schedule.json"
    schedule.save(path)
    result = get_algorithm("adaptive_eps_greedy", search_schedule=str(path)).run(make_problem(denoiser, LABELS, SEEDS))
    assert int(result.nfe[0]) == cost.schedule_calls(SIX, schedule)


def test_calibration_keeps_the_move_and_beam_with_the_best_validation_reward(denoiser):
    from noisesearch.adaptive import expected_gain
    from noisesearch.api import search
    from noisesearch.drivers import calibrate, calibrate_move
    from noisesearch.seeds import calibration_seeds, draw_labels

    args = {"steps": 6, "denoiser": denoiser}
    chosen = calibrate("brightness", CalibrationConfig(conditions=3, N=2, K=8, moves=[(1, 0.15, 0.3)], beams=(1, 2),
                                                       validation_conditions=4), **args)
    alone = [calibrate_move("brightness", CalibrationConfig(conditions=3, N=2, K=8), **args),
             calibrate_move("brightness", CalibrationConfig(conditions=3, N=1, K=16, eps=0.15, lambda_=0.3), **args)]
    candidates = chosen.info["candidates"]
    assert [(c["N"], c["K"], c["B"]) for c in candidates] == [(2, 8, 1), (2, 8, 2), (1, 16, 1), (1, 16, 2)]
    assert [c["expected_gain"] for c in candidates] == [expected_gain(s) for s in alone for _ in (1, 2)]
    assert chosen.info["validation_conditions"] == 4  # the 3 calibration conditions and one more
    labels, seeds = draw_labels(4, 0), calibration_seeds(0, 4)
    runs = [search(algorithm="adaptive_eps_greedy", reward="brightness", labels=labels, seeds=seeds, steps=6,
                   denoiser=denoiser, evaluator=None, search_schedule=s, target_nfe=s.info["target_nfe"], B=B)
            for s in alone for B in (1, 2)]
    measured = [float(r.rewards.mean()) for r in runs]
    assert [c["validation_reward"] for c in candidates] == measured
    best = candidates[measured.index(max(measured))]
    assert (chosen.N[0], chosen.info["lambda_"], chosen.info["B"]) == (best["N"], best["lambda_"], best["B"])
    assert chosen.info["calibration_nfe"] == (sum(s.info["calibration_nfe"] for s in alone)
                                              + sum(int(r.nfe.sum()) for r in runs))
    assert get_algorithm("adaptive_eps_greedy", search_schedule=chosen).B == best["B"]
    with pytest.raises(NoiseSearchError, match="binomial"):
        calibrate("brightness", CalibrationConfig(conditions=3, method="binomial", moves=[(1, 0.15, 0.3)]), **args)
    with pytest.raises(NoiseSearchError, match="beams"):
        calibrate("brightness", CalibrationConfig(conditions=3, beams=(0,)), **args)
    with pytest.raises(NoiseSearchError, match="B = 9 incumbents need 99 calls per image, above the budget"):
        calibrate("brightness", CalibrationConfig(conditions=3, N=2, K=8, moves=(), beams=(1, 9)), **args)


def test_calibration_without_validation_keeps_the_move_of_the_largest_expected_gain(denoiser):
    from noisesearch.adaptive import expected_gain
    from noisesearch.drivers import calibrate, calibrate_move

    args = {"steps": 6, "denoiser": denoiser}
    moves = [CalibrationConfig(conditions=3, N=2, K=8), CalibrationConfig(conditions=3, N=1, K=16, eps=0.15,
                                                                           lambda_=0.3)]
    alone = [calibrate_move("brightness", config, **args) for config in moves]
    gains = [expected_gain(s) for s in alone]
    assert gains[0] != gains[1]
    best = alone[gains.index(max(gains))]
    chosen = calibrate("brightness", CalibrationConfig(conditions=3, N=2, K=8, moves=[(1, 0.15, 0.3)], beams=(1,),
                                                       validation_conditions=0), **args)
    assert (chosen.K, chosen.eps, chosen.N, chosen.gains) == (best.K, best.eps, best.N, best.gains)
    info = chosen.info
    assert info["B"] == 1 and info["validation_conditions"] == 0
    assert info["calibration_nfe"] == sum(s.info["calibration_nfe"] for s in alone)  # probes only
    assert [c["expected_gain"] for c in info["candidates"]] == gains
    assert not any("validation_reward" in c for c in info["candidates"])
    with pytest.raises(NoiseSearchError, match="choosing among beams"):
        CalibrationConfig(beams=(1, 2), validation_conditions=0)


@pytest.mark.parametrize("argv, message", [
    (["calibrate", "--out", "."], "is a directory"),
    (["calibrate", "--out", "no/such/dir/s.json"], "does not exist"),
    (["calibrate", "--out", "s.json", "--method", "magic"], "unknown calibration method"),
    (["calibrate", "--out", "s.json", "--beams", "1,0"], "beams must be a non-empty list of integers"),
    (["calibrate", "--out", "s.json", "--sampler", "nope", "--conditions", "2"], "unknown sampler 'nope'"),
    (["calibrate", "--out", "s.json", "--backend", "nope", "--conditions", "2"], "unknown backend 'nope'"),
    (["calibrate", "--out", "s.json", "--conditions", "1"], "at least 2 conditions"),
])
def test_calibrate_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_unparsable_beams_are_a_one_line_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["calibrate", "--out", "s.json", "--beams", "two"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "is not a list of beam widths" in err and len(err.strip().splitlines()) == 1


def test_search_schedule_passes_through_the_api_and_the_cli_flags(denoiser, tmp_path):
    from noisesearch.api import search
    from noisesearch.cli import build_parser

    result = search(algorithm="adaptive_eps_greedy", reward="brightness", labels=[1, 2], denoiser=denoiser, steps=6,
                    evaluator=None, search_schedule=TINY_PLAN)
    assert int(result.nfe[0]) == cost.schedule_calls(SIX, TINY_PLAN)
    assert result.config["params"]["search_schedule"]["K"] == list(TINY_PLAN.K)
    args = build_parser().parse_args(["sample", "--algorithm", "adaptive_eps_greedy", "--search-schedule", "s.json",
                                      "--target-nfe", "300", "--out", str(tmp_path)])
    assert (args.search_schedule, args.target_nfe) == ("s.json", 300)


def test_the_validated_beam_shrinks_under_a_smaller_budget_and_an_explicit_b_wins():
    from dataclasses import replace

    schedule = replace(TINY_PLAN, info={"B": 4, "target_nfe": 360})
    widths = [get_algorithm("adaptive_eps_greedy", search_schedule=schedule, target_nfe=n).B
              for n in (30, 140, 280, 360, 2000)]
    assert widths == [1, 1, 3, 4, 4]
    assert get_algorithm("adaptive_eps_greedy", search_schedule=schedule).B == 4
    assert get_algorithm("adaptive_eps_greedy", search_schedule=schedule, target_nfe=140, B=2).B == 2
    assert get_algorithm("adaptive_eps_greedy", search_schedule=TINY_PLAN, target_nfe=140).B == 1


@pytest.mark.parametrize("settings, message", [
    ({"method": "magic"}, "unknown calibration method"),
    ({"conditions": 1}, "at least 2 conditions"),
    ({"beams": ()}, "beams must be a non-empty list"),
    ({"moves": [(1, 0.2)]}, "triples"),
    ({"moves": [(0, 0.2, 0.3)]}, "N must be an integer of at least 1"),
    ({"N": 0}, "N must be an integer of at least 1"),
    ({"K": 0}, "K must be an integer of at least 1"),
    ({"eps": 1.5}, r"eps must lie in \[0, 1\]"),
    ({"lambda_": 0.0}, "lambda_ must be a positive"),
    ({"target_nfe": 0}, "target_nfe must be an integer of at least 1"),
    ({"validation_conditions": -1}, "validation_conditions must be an integer of at least 0"),
    ({"validation_conditions": 0, "beams": (1, 2)}, r"choosing among beams \[1, 2\] needs validation runs"),
    ({"method": "binomial", "beams": (1, 2)}, "binomial fits no gains"),
])
def test_calibration_config_rejects_what_calibration_cannot_use(settings, message):
    with pytest.raises(NoiseSearchError, match=message):
        CalibrationConfig(**settings)
    assert CalibrationConfig(moves=[[2, "0.3", 0.2]]).moves == ((2, 0.3, 0.2),)


@pytest.mark.parametrize("args, expected", [
    ([], {"eps": 1.0, "moves": ((1, 0.15, 0.45),), "beams": (1, 2, 4), "validation_conditions": 64}),
    (["--moves", "none", "--beams", "1"], {"eps": 1.0, "moves": (), "beams": (1,), "validation_conditions": 64}),
    (["--method", "binomial"], {"eps": 0.4, "moves": (), "beams": (1,), "validation_conditions": None}),
    (["--method", "gain", "--eps", "0.3"], {"eps": 0.3, "moves": (), "beams": (1,), "validation_conditions": None}),
])
def test_calibrate_defaults_to_the_recipe_of_the_shipped_schedules(tmp_path, monkeypatch, args, expected):
    import noisesearch.adaptive

    seen = []

    def stop(reward, config, *rest, **kwargs):
        seen.append(config)
        raise NoiseSearchError("stopped before calibrating")

    monkeypatch.setattr("noisesearch.cli.calibrate", stop)
    assert main(["calibrate", "--reward", "brightness", "--out", str(tmp_path / "s.json"), *args]) == 1
    (config,) = seen
    assert {name: getattr(config, name) for name in expected} == expected
    shipped = [json.loads(path.read_text())["info"]["command"]
               for path in sorted((Path(noisesearch.adaptive.__file__).parent / "schedules").glob("embedded_*.json"))]
    if not args:  # the library's default is the same recipe, and the shipped schedules were made with it
        assert config == CalibrationConfig()
        assert len(shipped) == 4
        assert all("--eps 1.0 --moves 1,0.15,0.45 --beams 1,2,4 --validation-conditions 64" in c for c in shipped)
