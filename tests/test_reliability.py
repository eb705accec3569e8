"""R(σ), how well a step's x0-prediction reward predicts the final reward (adaptive.reliability)."""

import json

import numpy as np
import pytest
import torch

from noisesearch import NoiseSearchError, Problem, cost, get_reward, make_sampler
from noisesearch.adaptive.reliability import probe_reliability, rank_correlation
from noisesearch.cli import main


def test_rank_correlation_of_monotone_reversed_tied_and_constant_rewards():
    a = np.array([0.1, 0.5, 0.3, 0.9])
    assert rank_correlation(a, a ** 3) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    assert rank_correlation(np.array([1.0, 1.0, 2.0]), np.array([0.0, 0.0, 5.0])) == pytest.approx(1.0)
    assert np.isnan(rank_correlation(a, np.ones(4)))


def problem_of(denoiser, n: int = 3) -> Problem:
    return Problem(denoiser, get_reward("brightness"), torch.tensor([1, 4, 7][:n]), [5, 6, 7][:n],
                   make_sampler("heun", 6))


def test_the_probe_spends_its_documented_nfe_and_is_reproducible(denoiser):
    problem = problem_of(denoiser)
    first = probe_reliability(problem, candidates=3)
    calls = cost.reliability_probe_calls(problem.sampler, 3)
    assert problem.nfe.tolist() == [cost.nfe(calls, denoiser)] * 3
    assert first.per_condition.shape == (len(problem.sampler.searchable_steps()), 3)
    finite = first.per_condition[np.isfinite(first.per_condition)]
    assert len(finite) and np.all(np.abs(finite) <= 1 + 1e-9)
    again = probe_reliability(problem_of(denoiser), candidates=3)
    assert np.array_equal(first.per_condition, again.per_condition, equal_nan=True)
    assert [r["sigma"] for r in first.summary()] == first.sigmas.tolist()


def test_a_single_candidate_is_a_one_line_error(denoiser):
    with pytest.raises(NoiseSearchError, match="at least 2 candidates"):
        probe_reliability(problem_of(denoiser), candidates=1)


def test_the_command_writes_the_curve_and_its_plot(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["reliability", "--rewards", "brightness", "--conditions", "2", "--candidates", "2", "--steps", "3",
                 "--no-progress", "--out", str(out)]) in (0, None)
    written = json.loads((out / "reliability.json").read_text())
    assert written["command"].startswith("noisesearch reliability --rewards brightness")
    curve = written["rewards"]["brightness"]
    assert len(curve["steps"]) == len(curve["sigmas"]) and curve["nfe"] > 0
    assert (out / "reliability.png").stat().st_size > 0
    assert "NFE ->" in capsys.readouterr().out


def test_reliability_gains_follow_the_gaussian_model_of_best_of_m():
    from noisesearch.adaptive.reliability import Reliability, expected_maxima, reliability_gains

    e = expected_maxima(3)  # E[max of 2] = 1/√π, E[max of 3] = 3/(2√π)
    assert e == pytest.approx([0.0, 1 / np.sqrt(np.pi), 1.5 / np.sqrt(np.pi)], abs=1e-9)
    curve = Reliability(np.array([3.0, 1.0]), np.array([[0.5, 0.5], [-0.2, np.nan]]), 4,
                        np.array([[0.1, 0.3], [0.1, 0.1]]))
    gains, eps = reliability_gains(curve, K=2, N=1)
    assert gains[0] == pytest.approx([0.5 * 0.2 * e[1], 0.5 * 0.2 * (e[2] - e[1])])
    assert gains[1] == [0.0, 0.0] and eps == pytest.approx([0.5, 1.0])  # R < 0: no gain, global draws only
    with pytest.raises(NoiseSearchError, match="no spread"):
        reliability_gains(Reliability(curve.sigmas, curve.per_condition, 4), K=2, N=1)


def test_the_reliability_calibration_spends_one_probe_and_exploits_where_r_is_high(denoiser):
    from noisesearch.adaptive import CalibrationConfig
    from noisesearch.adaptive.reliability import CANDIDATES
    from noisesearch.drivers import calibrate

    schedule = calibrate("brightness", CalibrationConfig(conditions=2, N=2, K=4, method="reliability"), steps=6,
                     denoiser=denoiser)
    sampler = make_sampler("heun", 6)
    assert schedule.info["calibration_nfe"] == 2 * cost.reliability_probe_calls(sampler, CANDIDATES)
    R = [max(row["R"], 0.0) for row in schedule.info["reliability"]]
    assert schedule.eps == pytest.approx(tuple(1 - r for r in R))
    assert cost.schedule_calls(sampler, schedule) <= schedule.info["target_nfe"]
    assert all(k == 0 for k, r in zip(schedule.K, R, strict=True) if r == 0)
    with pytest.raises(NoiseSearchError, match="reliability fits no gains per move"):
        CalibrationConfig(method="reliability", moves=[(1, 0.15, 0.3)])
