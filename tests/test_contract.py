"""The contract suite (noisesearch.testing) over every registered algorithm, small parameters, Heun and Euler."""

import pytest

from noisesearch import get_algorithm, make_sampler
from noisesearch.sampling import Sampler
from noisesearch.search import algorithm_names
from noisesearch.search.step_schedule import SearchSchedule
from noisesearch.testing import CHECKS, SET_LEVEL_CHECKS, Contract

TINY_PLAN = SearchSchedule.uniform(  # per-step K, eps and N for the 4 searchable steps of the 6-step samplers
    make_sampler("heun", 6), K=[2, 0, 3, 1], eps=[1.0, 0.5, 0.3, 0.0], N=[2, 3, 2, 2],
    gains=((0.2, 0.1), (0.05,), (0.3, 0.2, 0.1, 0.05), (0.01, 0.0)))

CASES = {  # case name: (registered algorithm, small parameters)
    "naive": ("naive", {}),
    "best_of_n": ("best_of_n", {"N": 3}),
    "eps_greedy": ("eps_greedy", {"N": 2, "K": 3}),
    "eps_greedy_plain": ("eps_greedy", {"N": 2, "K": 2, "elitism": False}),
    "eps_greedy_full_step": ("eps_greedy", {"N": 2, "K": 2, "score_with": "step"}),
    "zero_order": ("zero_order", {"N": 2, "K": 3}),
    "zero_order_initial": ("zero_order_initial", {"N": 2, "K": 2}),
    "ses": ("ses", {"evaluations": 5, "popsize": 2, "elites": 2}),
    "ses_preview": ("ses", {"evaluations": 4, "popsize": 3, "elites": 2, "preview_steps": 3}),
    "beam": ("beam", {"N": 2, "B": 2}),
    "mcts": ("mcts", {"N": 2, "S": 3}),
    "mcts_parallel": ("mcts", {"N": 2, "S": 3, "parallel": 2}),
    "paths": ("paths", {"N": 2, "M": 2, "sigma_start": 5.0, "delta_f": 1, "delta_b": 2}),
    "eps_greedy_schedule": ("eps_greedy", {"search_schedule": TINY_PLAN}),
    "eps_greedy_window": ("eps_greedy_window", {"N": 2, "K_in": 3, "K_out": 0, "sigma_lo": 0.5, "sigma_hi": 10.0}),
    "adaptive": ("adaptive_eps_greedy", {"search_schedule": TINY_PLAN}),
    "adaptive_budget_patience": ("adaptive_eps_greedy",
                                 {"search_schedule": TINY_PLAN, "target_nfe": 30, "patience": 1}),
    "eps_greedy_beam_of_incumbents": ("eps_greedy", {"N": 2, "K": 2, "B": 3}),
    "adaptive_beam_budget_patience": ("adaptive_eps_greedy",
                                      {"search_schedule": TINY_PLAN, "target_nfe": 50, "patience": 1, "B": 2}),
    "smc": ("smc", {"particles": 3, "resample_every": 1}),
    "smc_ess_systematic": ("smc", {"particles": 3, "potential": "difference", "ess_threshold": 0.9,
                                   "resampling": "systematic"}),
    "svdd": ("svdd", {"candidates": 3}),
    "svdd_soft": ("svdd", {"candidates": 2, "alpha": 0.05}),
    "evo": ("evo", {"population": [3, 2, 2], "evolution_steps": [0, 2], "elites": 1}),
    "rbf": ("rbf", {"target_nfe": 20, "init_particles": 2}),
    "online_adaptive": ("online_adaptive_eps_greedy", {"search_schedule": TINY_PLAN, "target_nfe": 30,
                                                       "stream_batch": 3}),
    "online_adaptive_uniform_prior": ("online_adaptive_eps_greedy", {"target_nfe": 40, "stream_batch": 2}),
}


def for_sampler(params: dict, sampler: Sampler) -> dict:
    """A case's parameters for another sampler: its search schedule's per-step values, cycled over that
    sampler's searchable steps."""
    schedule = params.get("search_schedule")
    if schedule is None:
        return params
    n = len(sampler.searchable_steps())

    def cycle(values):
        return [values[t % len(values)] for t in range(n)]

    retargeted = SearchSchedule.uniform(sampler, cycle(schedule.K), cycle(schedule.eps), cycle(schedule.N),
                                        gains=tuple(cycle(schedule.gains)))
    return {**params, "search_schedule": retargeted}


def test_every_registered_algorithm_has_a_case_here():
    assert {name for name, _ in CASES.values()} == set(algorithm_names())


SAMPLERS = {"heun": make_sampler("heun", 6), "euler": make_sampler("euler", 6)}
_CONTRACTS: dict[tuple[str, str], Contract] = {}


def contract(case: str, sampler: str, denoiser) -> Contract:
    """One Contract per (case, sampler), so that its reference run is shared by the checks."""
    if (case, sampler) not in _CONTRACTS:
        name, params = CASES[case]
        _CONTRACTS[case, sampler] = Contract(get_algorithm(name, **params), SAMPLERS[sampler], denoiser)
    return _CONTRACTS[case, sampler]


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_contract(denoiser, case, check, sampler):
    getattr(contract(case, sampler, denoiser), check)()


@pytest.mark.parametrize("check", SET_LEVEL_CHECKS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_set_level_contract(denoiser, case, check):
    """The set-level checks on Euler alone (half Heun's calls): what they check, the order of conditions, is the
    same for every solver."""
    getattr(contract(case, "euler", denoiser), check)()
