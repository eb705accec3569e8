"""CLI: error paths print one line and exit non-zero; a small real run writes its outputs."""

import json
import subprocess
import sys

import pytest

from noisesearch.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "noisesearch.cli", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("args, fragment", [
    (["--algorithm", "nope"], "unknown algorithm 'nope'"),
    (["--reward", "nope"], "unknown reward 'nope'"),
    (["--labels", "3,12"], "label 12 is outside 0-9"),
    (["--labels", "a,b"], "comma-separated digits"),
    (["--algorithm", "best_of_n", "--N", "0"], "N must be an integer of at least 1"),
    (["--algorithm", "naive", "--N", "3"], "--N is not a parameter of 'naive'"),
    (["--max-batch", "0"], "positive integer"),
    (["--seed", "-1"], "seed must be non-negative"),
    (["--algorithm", "eps_greedy", "--eps", "1.5"], "eps must lie in [0, 1]"),
    (["--algorithm", "eps_greedy", "--lambda", "0"], "lambda_ must be a positive"),
    (["--algorithm", "eps_greedy", "--K", "0"], "K must be an integer of at least 1"),
    (["--algorithm", "eps_greedy", "--elitism", "maybe"], "expected true or false"),
    (["--algorithm", "beam", "--B", "0"], "B must be an integer of at least 1"),
    (["--algorithm", "mcts", "--S", "0"], "S must be an integer of at least 1"),
    (["--sampler", "nope"], "unknown sampler 'nope'"),
    (["--backend", "nope"], "unknown backend 'nope'"),
    (["--backend", "edm"], "the edm backend needs --model PATH"),
    (["--online", "s.json", "--algorithm", "eps_greedy"], "--online needs --algorithm adaptive_eps_greedy"),
    (["--online", "s.json", "--algorithm", "adaptive_eps_greedy"], "and --target-nfe N"),
    (["--online", "s.json", "--algorithm", "adaptive_eps_greedy", "--target-nfe", "40", "--B", "2"],
     "--online plans every batch's schedule itself: drop --B"),
    (["--online", "s.json", "--algorithm", "adaptive_eps_greedy", "--target-nfe", "40", "--online-batch", "0"],
     "batch must be a positive integer"),
    (["--online", "s.json", "--algorithm", "adaptive_eps_greedy", "--target-nfe", "40", "--windows", "late"],
     "unknown window 'late'"),
])
def test_bad_input_is_one_line_and_non_zero(tmp_path, capsys, args, fragment):
    code = 2
    try:
        code = main(["sample", "--out", str(tmp_path / "o"), "--steps", "2", *args])
    except SystemExit as exit_:  # argparse type errors exit from inside parse_args
        code = exit_.code
    err = capsys.readouterr().err
    assert code != 0
    assert fragment in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_out_that_is_a_file_is_one_line_error(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    proc = run_cli("sample", "--out", str(target), "--steps", "2")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"noisesearch: --out {target} is a file: give a directory path"]


def test_unknown_subcommand_is_one_line():
    proc = run_cli("frobnicate")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1


def test_list_shows_algorithms_rewards_backends_samplers_and_nfe_formulas(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    expected = ["naive", "best_of_n", "eps_greedy", "mcts", "N=4", "brightness", "compressibility", "classifier",
                "evaluator", "NFE per image:"]
    for name in expected:
        assert name in out
    sections = (out.index("algorithms:"), out.index("rewards:"), out.index("feature extractors"),
                out.index("backends:"), out.index("samplers:"))
    assert list(sections) == sorted(sections)
    extractors, backends, samplers = out[sections[2]:sections[3]], out[sections[3]:sections[4]], out[sections[4]:]
    assert "  inception        path (required), trust_model_code=False, device=cpu" in extractors
    assert "  mnist " in extractors and "MNIST-FID" in extractors
    for name in ("embedded", "edm", "diffusers"):
        assert f"  {name} " in backends
    for name in ("heun", "euler"):
        assert f"  {name} " in samplers


def test_sample_with_the_euler_sampler_costs_one_call_per_step(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["sample", "--algorithm", "best_of_n", "--N", "2", "--reward", "brightness", "--labels", "3,5",
                 "--sampler", "euler", "--steps", "4", "--evaluator", "none", "--no-progress", "--out", str(out)]) == 0
    record = json.loads((out / "result.json").read_text())
    assert [im["nfe"] for im in record["images"]] == [2 * 4, 2 * 4]
    assert record["config"]["sampler"]["solver"] == "euler" and record["config"]["sampler"]["steps"] == 4
    assert record["config"]["nfe_formula_per_image"] == 8


def test_sample_writes_grid_pngs_and_result_json(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("sample", "--algorithm", "best_of_n", "--N", "2", "--reward", "classifier",
                   "--labels", "3,5,7", "--seed", "4", "--steps", "4", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    record = json.loads((out / "result.json").read_text())
    assert (out / "grid.png").exists()
    expected_files = [f"images/{k:03d}_label{lab}.png" for k, lab in enumerate([3, 5, 7])]
    assert [im["file"] for im in record["images"]] == expected_files
    for im in record["images"]:
        assert (out / im["file"]).exists()
        assert im["nfe"] == 2 * 7
        assert 0 <= im["reward"] <= 1 and 0 <= im["evaluator"] <= 1
    assert record["config"]["seeds"] == [4, 5, 6]
    assert record["config"]["params"] == {"N": 2, "nested": False}
    assert record["nfe_per_image"] == 14
    assert "NFE" in proc.stderr  # the progress bar


def test_sample_online_learns_over_the_arms_given_and_writes_the_one_it_runs(tmp_path):
    state, out = tmp_path / "state.json", tmp_path / "o"
    assert main(["sample", "--online", str(state), "--algorithm", "adaptive_eps_greedy", "--target-nfe", "40",
                 "--moves", "4,0.4,0.15", "--beams", "1", "--windows", "all,middle", "--steps", "6", "--labels", "3",
                 "--reward", "brightness", "--evaluator", "none", "--no-progress", "--out", str(out)]) == 0
    from noisesearch.adaptive.portfolio import Portfolio
    from noisesearch.search.step_schedule import SearchSchedule

    learned = Portfolio.load(state)
    assert learned.names == ["N4 eps0.4 lambda0.15 B1", "N4 eps0.4 lambda0.15 B1 middle"]
    assert SearchSchedule.load(out / "schedule.json") == learned.learners[learned.best()].prior
    assert json.loads((out / "result.json").read_text())["nfe_per_image"] <= 40
