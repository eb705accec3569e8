"""The `families` bench preset: every registered algorithm (but the online learner, which the `online` preset
measures over streams), each run within 5 % of a budget by the cost model."""

import pytest

from noisesearch import make_sampler
from noisesearch.experiments.presets import get_preset
from noisesearch.search import algorithm_class, algorithm_names, get_algorithm
from noisesearch.search.step_schedule import SearchSchedule

PRESET = get_preset("families")
SAMPLER = make_sampler("heun", PRESET.steps)
PLACEHOLDER = SearchSchedule.uniform(SAMPLER, 1, 0.5, 1, gains=((1.0,),) * len(SAMPLER.searchable_steps()))
DATA_DEPENDENT = {"mcts", "adaptive_eps_greedy"}  # NFE known after the run: these are upper bounds


def nfe_per_image(run) -> int:
    """The run's NFE per image by the cost model: its exact formula, or for data-dependent runs (MCTS's
    later simulations go deeper and cost less; adaptive ε-greedy stops under its target) the upper bound."""
    algo = get_algorithm(run.algorithm, **run.algorithm_params({c.name: PLACEHOLDER for c in PRESET.rewards},
                                                               PRESET.rewards[0].name))
    formula = algo.nfe_formula(SAMPLER)
    assert (formula is None) == (run.algorithm in DATA_DEPENDENT), run.label
    return algo.nfe_estimate(SAMPLER) if formula is None else formula


@pytest.mark.parametrize("run", PRESET.runs[1:], ids=lambda run: run.label)
def test_every_run_lands_within_5_percent_of_a_budget(run):
    nfe = nfe_per_image(run)
    budget = min(PRESET.target_nfes, key=lambda b: abs(nfe - b))
    assert abs(nfe - budget) <= 0.05 * budget, f"{run.label}: {nfe} NFE per image, {budget} is the nearest budget"


def test_every_registered_algorithm_runs_and_every_family_has_a_run_at_every_budget():
    assert PRESET.target_nfes == (140, 280, 560, 1120) and PRESET.labels == 36
    streams = {name for name in algorithm_names() if algorithm_class(name).learns_across_conditions}
    assert streams == {"online_adaptive_eps_greedy"}  # learns from label to label: the `online` preset's streams
    assert {run.algorithm for run in PRESET.runs} == set(algorithm_names()) - streams
    at: dict[str, set[int]] = {}
    for run in PRESET.runs[1:]:
        nfe = nfe_per_image(run)
        at.setdefault(run.algorithm, set()).add(min(PRESET.target_nfes, key=lambda b: abs(nfe - b)))
    for algorithm, budgets in at.items():
        expected = set(PRESET.target_nfes) - ({140} if algorithm == "mcts" else set())  # MCTS's least: 282 (N=2, S=1)
        assert budgets == expected, algorithm
    assert [c.guidance for c in PRESET.rewards] == [1.0, 1.0, 1.0, 0.0]


def test_total_nfe_of_the_preset_by_the_cost_model():
    """The estimate the README quotes: search NFE in all (upper bounds for the data-dependent runs), before
    the four calibrations (about 213,000 NFE each: the adaptive preset's, measured)."""
    per_label = sum(nfe_per_image(run) for run in PRESET.runs)
    total = per_label * PRESET.labels * len(PRESET.rewards)
    assert per_label == 29_241 and total == 4_210_704
