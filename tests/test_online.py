"""The online learner of adaptive ε-greedy (noisesearch.adaptive.online, noisesearch.drivers.online)."""

import json

import numpy as np
import pytest
import torch

from noisesearch.adaptive.online import OnlineSchedule, uniform_prior
from noisesearch.adaptive.portfolio import MIN_TRIALS, Portfolio, arm_name, arm_priors
from noisesearch.drivers import search_online
from noisesearch.errors import NoiseSearchError
from noisesearch.sampling import make_sampler
from noisesearch.search import get_algorithm
from noisesearch.search.step_schedule import SearchSchedule
from noisesearch.types import TRACE_FIELDS, Trace

FLAT = tuple(tuple(1.0 / k for k in range(1, 5)) for _ in range(2))


def prior() -> SearchSchedule:
    return SearchSchedule((1, 2), (5.0, 0.5), (4, 4), (0.5, 0.5), (2, 2), FLAT, {"method": "test"})


def synthetic_trace(conditions: int, gain_at: dict[int, float], K: int = 4,
                    start: dict[int, float] | None = None) -> Trace:
    """Every condition searches both steps K iterations; step s gains gain_at[s] over its first candidates' mean
    score start[s] (default 0) in its first iteration only, and each second iteration's winner is global."""
    start = start or {}
    rows = {name: [] for name in TRACE_FIELDS}
    for c in range(conditions):
        for step, sigma in ((1, 5.0), (2, 0.5)):
            for k in range(1, K + 1):
                rows["condition"].append(c)
                rows["step"].append(step)
                rows["sigma"].append(sigma)
                rows["iteration"].append(k)
                rows["winner_score"].append(start.get(step, 0.0) + gain_at[step])
                rows["incumbent_score"].append(start.get(step, 0.0) + gain_at[step])
                rows["winner_global"].append(k % 2 == 0)
                rows["changed"].append(k == 1 or k % 2 == 0)
                rows["mean_score"].append(start.get(step, 0.0) if k == 1 else 0.0)
    floats = {"sigma", "winner_score", "incumbent_score", "mean_score"}
    return Trace(**{n: torch.tensor(v, dtype=torch.float32 if n in floats else None) for n, v in rows.items()})


def test_update_learns_where_the_gain_is():
    learner = OnlineSchedule(prior(), prior_weight=1.0)
    for _ in range(5):
        learner.update(synthetic_trace(8, {1: 0.0, 2: 1.0}), prior())
    mean, sd = learner.posterior()
    assert mean[1, 0] > 10 * mean[0, 0]  # the step that gained gets the larger first-iteration gain
    assert mean[1, 1] < 0.05 * mean[1, 0]  # and later iterations there gained nothing
    schedule = learner.next_schedule(draw=False)
    assert schedule.gains[1][0] > schedule.gains[0][0]
    assert schedule.eps[0] > 0.99 and schedule.eps[1] > 0.99  # only global draws ever won
    assert learner.batches == 5 and learner.conditions == 40


def test_survival_credit_counts_the_share_of_a_gain_that_reaches_the_next_step():
    # step 1 gains 1.0 over its start 0, and step 2 starts at 0.25: a quarter of it survived; step 2 gains 0.5
    # over 0.25, all of which the final reward 0.75 keeps
    trace = synthetic_trace(4, {1: 1.0, 2: 0.5}, start={1: 0.0, 2: 0.25})
    learned = {credit: OnlineSchedule(prior(), prior_weight=1e-9, credit=credit) for credit in ("survival", "x0")}
    for learner in learned.values():
        learner.update(trace, prior(), np.full(4, 0.75))
    assert learned["survival"].survival() == pytest.approx([0.25, 1.0])
    assert learned["x0"].survival() == pytest.approx([1.0, 1.0])
    survival, x0 = learned["survival"].posterior()[0], learned["x0"].posterior()[0]
    assert survival[:, 0] == pytest.approx([0.25, 0.5]) and x0[:, 0] == pytest.approx([1.0, 0.5])
    unseen = OnlineSchedule(prior(), credit="survival")
    unseen.update(trace, prior())  # without final rewards the last step's survival is not observed
    assert unseen.offered.tolist() == [4.0, 0.0] and unseen.survival() == pytest.approx([0.25, 1.0])
    with pytest.raises(NoiseSearchError, match="credit must be one of survival, x0"):
        OnlineSchedule(prior(), credit="final")


def test_thompson_draws_differ_by_seed_and_repeat():
    learner = OnlineSchedule(prior())
    learner.update(synthetic_trace(2, {1: 0.5, 2: 0.5}), prior())
    assert learner.next_schedule(seed=3).gains == learner.next_schedule(seed=3).gains
    assert learner.next_schedule(seed=3).gains != learner.next_schedule(seed=4).gains


def test_state_round_trips_through_json(tmp_path):
    learner = OnlineSchedule(prior())
    learner.update(synthetic_trace(3, {1: 0.2, 2: 0.7}), prior())
    learner.save(tmp_path / "state.json")
    again = OnlineSchedule.load(tmp_path / "state.json")
    assert again.next_schedule(seed=1) == learner.next_schedule(seed=1) and again.batches == 1
    old = {k: v for k, v in learner.to_dict().items() if k not in ("credit", "offered", "survived")}
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert OnlineSchedule.load(tmp_path / "old.json").credit == "x0"  # states from before survival credit
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(NoiseSearchError, match="not an online schedule"):
        OnlineSchedule.load(tmp_path / "bad.json")


def test_stream_stays_within_budget_and_resumes(tmp_path):
    state = tmp_path / "state.json"
    seen = []
    result = search_online(state=state, target_nfe=40, batch=2, labels=[1, 2, 3], reward="brightness", steps=6,
                           evaluator=None, on_batch=lambda i, learner: seen.append(learner.batches))
    assert seen == [1, 2] and int(result.nfe.max()) <= 40 and len(result.nfe) == 3
    assert result.config["labels"] == [1, 2, 3] and result.config["seeds"] == [0, 1, 2]
    assert int(result.trace.condition.max()) == 2
    again = search_online(state=state, target_nfe=40, batch=4, labels=[4], reward="brightness", steps=6,
                          evaluator=None)
    learned = Portfolio.load(state)
    assert learned.batches == 3 and int(again.nfe.max()) <= 40 and len(learned.history) == 4
    best = learned.learners[learned.best()].prior
    assert SearchSchedule.from_dict(again.config["search_schedule"]) == best  # the schedule the best arm runs
    # no shipped schedule at 6 steps: the uniform arms that leave half of 40 calls to search (B = 1 only)
    assert learned.names == [arm_name(p) for p in arm_priors(make_sampler("heun", 6), 40)]
    assert learned.names == ["N1 eps0.15 lambda0.45 B1", "N1 eps0.15 lambda0.45 B1 middle", "N4 eps1 lambda0.15 B1",
                             "N4 eps1 lambda0.15 B1 middle"]
    assert result.config["arms"] == [learned.names[a] for a in learned.history[:3]]
    assert [a["conditions"] for a in again.config["online"]["arms"]] == [int(c) for c in learned.counts]


def test_a_stream_takes_its_arms_once_and_reports_what_it_ran(tmp_path):
    state = tmp_path / "state.json"
    args = dict(target_nfe=40, batch=2, labels=[1, 2], reward="brightness", steps=6, evaluator=None)
    result = search_online(state=state, moves=((4, 0.4, 0.15),), windows=("all",), learn_steps=True, **args)
    learned = Portfolio.load(state)
    assert learned.names == ["N4 eps0.4 lambda0.15 B1"] and result.config["online"]["learn_steps"]
    assert SearchSchedule.from_dict(result.config["search_schedule"]) == learned.learners[0].next_schedule(draw=False)
    with pytest.raises(NoiseSearchError, match="its arms cannot change \\(drop beams"):
        search_online(state=state, beams=(2,), **args)
    with pytest.raises(NoiseSearchError, match="drop them, or drop search_schedule"):
        search_online(state=tmp_path / "new.json", search_schedule=prior(), beams=(1,), **args)


def test_the_registered_algorithm_plans_each_part_from_the_parts_before_it():
    from noisesearch import Problem, get_reward
    from noisesearch.testing import tiny_denoiser

    denoiser, sampler = tiny_denoiser(), make_sampler("heun", 6)
    problem = Problem(denoiser, get_reward("brightness"), torch.tensor([1, 2, 3, 4]), [5, 6, 7, 8], sampler)
    seen = []
    learner = OnlineSchedule(uniform_prior(sampler))
    algo = get_algorithm("online_adaptive_eps_greedy", target_nfe=40, stream_batch=3).continuing(
        learner, lambda index, learned: seen.append((index, learned.batches, learned.learners[0].next_schedule().K)))
    result = algo.run(problem)
    assert [s[:2] for s in seen] == [(0, 1), (1, 2)] and learner.conditions == 4
    assert result.config["arms"] == ["N4 eps0.4 lambda0.15 B1"] * 4
    assert int(result.nfe.max()) <= 40 and torch.equal(result.nfe, problem.nfe)
    assert sorted(set(result.trace.condition.tolist())) == [0, 1, 2, 3]
    with pytest.raises(NoiseSearchError, match="drop search_schedule"):
        get_algorithm("online_adaptive_eps_greedy", target_nfe=40, search_schedule=prior()).continuing(learner)
    with pytest.raises(NoiseSearchError, match="needs target_nfe"):
        get_algorithm("online_adaptive_eps_greedy")


def test_the_online_preset_streams_256_labels_at_most_035_of_eps_greedy():
    from noisesearch.experiments.presets import get_preset
    from noisesearch.experiments.runs import is_reference

    preset = get_preset("online")
    assert preset.labels == 256
    assert [c.reward for c in preset.rewards] == ["brightness", "compressibility", "classifier"]
    sampler = make_sampler("heun", preset.steps)
    (reference,) = [run for run in preset.runs if is_reference(run.algorithm, run.params)]
    ceiling = 0.35 * get_algorithm(reference.algorithm, **reference.params).nfe_formula(sampler)
    online = [run for run in preset.runs if run.algorithm == "online_adaptive_eps_greedy"]
    assert [run.params.get("search_schedule") for run in online] == [None]  # the uniform arms
    placeholder = uniform_prior(sampler)
    for run in preset.runs:
        if run is reference or run.algorithm == "naive":
            continue
        algo = get_algorithm(run.algorithm, **run.algorithm_params({"brightness": placeholder}, "brightness"))
        assert algo.nfe_estimate(sampler) <= ceiling, run.label


def arms_with(means: list[float], counts: list[int], sd: float = 0.1) -> Portfolio:
    """A portfolio of len(means) arms whose observed final rewards have these means and spread sd."""
    sampler = make_sampler("heun", 6)
    portfolio = Portfolio.of([uniform_prior(sampler, B=b + 1) for b in range(len(means))])
    portfolio.counts = np.array(counts, dtype=np.float64)
    portfolio.sums = portfolio.counts * np.array(means)
    portfolio.squares = portfolio.counts * (np.array(means) ** 2 + sd ** 2)
    return portfolio


def test_every_arm_is_tried_then_thompson_sampling_favours_the_best():
    fresh = arms_with([0.0, 0.0, 0.0], [0, 0, 0])
    assert fresh.choose(7).tolist()[:3 * MIN_TRIALS] == [0, 1, 2] * MIN_TRIALS  # round robin first
    known = arms_with([0.2, 0.9, 0.1], [10, 10, 10])
    mean, sd = known.posterior()
    assert np.allclose(mean, [0.2, 0.9, 0.1]) and np.allclose(sd, 0.1 * np.sqrt(10 / 9) / np.sqrt(10))
    assert known.choose(50).tolist() == [1] * 50 and known.best() == 1
    close = arms_with([0.50, 0.52, 0.0], [4, 4, 4], sd=0.2)
    assert set(close.choose(64).tolist()) == {0, 1}  # too close to tell: both still drawn, never the bad one
    assert close.choose(8).tolist() == close.choose(8).tolist()  # seeded by the batches seen


def test_portfolio_round_trips_and_reads_a_single_learner(tmp_path):
    portfolio = arms_with([0.3, 0.6], [3, 5])
    portfolio.learners[1].update(synthetic_trace(3, {1: 0.2, 2: 0.7}), prior())
    portfolio.record(np.array([1, 0, 0, 1, 1, 0, 1, 1]))  # the arms of the 3 + 5 conditions arms_with counted
    portfolio.save(tmp_path / "p.json")
    again = Portfolio.load(tmp_path / "p.json")
    assert again.names == portfolio.names and again.history == [1, 0, 0, 1, 1, 0, 1, 1] and again.batches == 1
    assert np.array_equal(again.counts, portfolio.counts) and again.learners[1].next_schedule(seed=2) == \
        portfolio.learners[1].next_schedule(seed=2)
    single = OnlineSchedule(prior())
    single.save(tmp_path / "one.json")
    assert len(Portfolio.load(tmp_path / "one.json").learners) == 1  # a state from before portfolios
    (tmp_path / "bad.json").write_text(json.dumps({"format": "noisesearch.online_portfolio/1"}))
    with pytest.raises(NoiseSearchError, match="field 'learners' is missing"):
        Portfolio.load(tmp_path / "bad.json")


def test_arms_need_room_to_search_and_exclude_a_prior_schedule():
    sampler = make_sampler("heun", 6)
    assert [p.info["B"] for p in arm_priors(sampler, 44, moves=((4, 0.4, 0.15),), windows=("all",))] == [1, 2]
    middle = arm_priors(sampler, 44, moves=((4, 0.4, 0.15),), beams=(1,), windows=("middle",))[0]
    assert [row[0] > 0 for row in middle.gains] == [False, True, True, False]  # 15–70 % of the 4 searchable steps
    with pytest.raises(NoiseSearchError, match="unknown window 'late'"):
        get_algorithm("online_adaptive_eps_greedy", target_nfe=40, windows=["late"])
    with pytest.raises(NoiseSearchError, match="leaves no arm"):
        arm_priors(sampler, 20)
    with pytest.raises(NoiseSearchError, match="drop them, or drop search_schedule"):
        get_algorithm("online_adaptive_eps_greedy", target_nfe=40, search_schedule=prior(), beams=[1, 2])


def test_arms_keep_their_prior_plan_unless_learn_steps():
    portfolio = Portfolio.of([prior()])
    portfolio.update(0, synthetic_trace(4, {1: 0.0, 2: 1.0}), prior(), np.zeros(4))
    assert portfolio.arm_schedule(0, learn_steps=False) == prior()
    learned = portfolio.arm_schedule(0, learn_steps=True)
    assert learned.info["method"] == "online" and learned.gains[1][0] > learned.gains[0][0]
