"""The search schedules shipped for the embedded model: adaptive_eps_greedy runs right after install."""

import json

import pytest

from noisesearch import NoiseSearchError, make_sampler, search
from noisesearch.adaptive.shipped import DIRECTORY, SHIPPED
from noisesearch.search.step_schedule import SearchSchedule


@pytest.mark.parametrize("key", sorted(SHIPPED), ids=[SHIPPED[k].removesuffix(".json") for k in sorted(SHIPPED)])
def test_each_shipped_schedule_fits_the_default_sampler_and_names_its_command(key):
    backend, reward, guidance = key
    schedule = SearchSchedule.load(DIRECTORY / SHIPPED[key])
    schedule.check_matches(make_sampler("heun", 18))
    command = schedule.info["command"]
    assert command.startswith("noisesearch calibrate") and f"--reward {reward}" in command
    assert (f"--guidance {guidance:g}" in command) == (guidance != 1.0)
    assert schedule.info["calibration_nfe"] > 0 and schedule.gains


def test_adaptive_eps_greedy_runs_without_a_schedule_flag_within_its_budget():
    result = search(algorithm="adaptive_eps_greedy", target_nfe=367, reward="brightness", labels=[3], evaluator=None)
    assert 35 < int(result.nfe[0]) <= 367
    schedule = result.config["params"]["search_schedule"]
    assert schedule["info"]["command"] == json.loads((DIRECTORY / SHIPPED["embedded", "brightness", 1.0]).read_text())[
        "info"]["command"]


@pytest.mark.parametrize("args", [{"reward": "brightness", "guidance": 3.0},
                                  {"reward": "brightness", "denoiser": "own"},
                                  {"reward": "brightness", "backend": "embedded_flow"}],
                         ids=["guidance", "own", "flow"])
def test_without_a_shipped_schedule_it_is_a_one_line_error(args, denoiser):
    if args.get("denoiser") == "own":
        args = {**args, "denoiser": denoiser}
    with pytest.raises(NoiseSearchError, match="needs a search schedule for this model and reward.*shipped: embedded"):
        search(algorithm="adaptive_eps_greedy", target_nfe=100, labels=[3], evaluator=None, **args)
