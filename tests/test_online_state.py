"""The online state file (issue 33): never overwritten by its own run's output, written through a unique
temporary file, locked against a second run, bound to the settings that made it, validated field by field
before any compute; and `sample` refuses a non-empty --out unless --overwrite."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import noisesearch.drivers.online as online_driver
from noisesearch.adaptive.online import ITERATIONS, OnlineSchedule
from noisesearch.adaptive.portfolio import PORTFOLIO_FORMAT, Portfolio
from noisesearch.cli import main
from noisesearch.drivers import search_online
from noisesearch.errors import NoiseSearchError
from noisesearch.search.step_schedule import SearchSchedule

FLAT = tuple(tuple(1.0 / k for k in range(1, 5)) for _ in range(2))
TINY = dict(target_nfe=40, reward="brightness", steps=6, evaluator=None)  # the cheapest real online run
CLI_TINY = ["--algorithm", "adaptive_eps_greedy", "--target-nfe", "40", "--steps", "6", "--reward", "brightness",
            "--evaluator", "none", "--no-progress"]
SETTINGS = {"backend": "embedded", "model": None, "reward": "brightness", "reward_args": {}, "guidance": 1.0,
            "sampler": {"solver": "heun", "steps": 6}}


def prior(B: int = 1) -> SearchSchedule:
    return SearchSchedule((1, 2), (5.0, 0.5), (4, 4), (0.5, 0.5), (2, 2), FLAT, {"method": "test", "B": B})


def valid_state() -> dict:
    """A format-2 state of two arms with some of everything learned (no model needed)."""
    portfolio = Portfolio.of([prior(1), prior(2)])
    rng = np.random.default_rng(0)
    for learner in portfolio.learners:
        learner.counts[:, :3] = rng.integers(0, 5, (2, 3))
        learner.sums[:, :3] = rng.normal(size=(2, 3)) * learner.counts[:, :3]
        learner.squares[:, :3] = learner.sums[:, :3] ** 2 + learner.counts[:, :3]
        learner.global_wins[:] = [1.5, 2.0]
        learner.offered[:] = [0.5, 0.25]
        learner.survived[:] = [0.25, -0.125]
        learner.batches, learner.conditions = 2, 3
    portfolio.counts[:] = [2, 1]
    portfolio.sums[:] = [0.75, 0.5]
    portfolio.squares[:] = [0.5, 0.25]
    portfolio.history, portfolio.batches = [0, 1, 0], 2
    portfolio.settings = copy.deepcopy(SETTINGS)
    return portfolio.to_dict()


def one_line_error(fn, *fragments: str) -> str:
    with pytest.raises(NoiseSearchError) as err:
        fn()
    message = str(err.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def cli(capsys, *args: str) -> tuple[int, str]:
    code = main(["sample", *args])
    err = capsys.readouterr().err
    return code, err


def run_cli(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "noisesearch.cli", "sample", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kwargs)


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# 1. the run's own output never replaces the state

@pytest.mark.parametrize("target", ["out", "out/schedule.json", "out/result.json", "out/grid.png",
                                    "out/images/state.json", "out/images"])
def test_state_cannot_be_a_path_the_run_writes(tmp_path, capsys, target):
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    code, err = cli(capsys, "--online", str(tmp_path / target), *CLI_TINY, "--labels", "1", "--out", str(out))
    assert code != 0 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "--online" in err or "online state" in err
    assert listing(tmp_path) == {}  # nothing written, nothing computed


# 2. saved through a unique temporary file

def test_save_leaves_a_users_tmp_file_alone(tmp_path):
    (tmp_path / "clob.tmp").write_text("mine")
    Portfolio.from_dict(valid_state()).save(tmp_path / "clob.json")
    Portfolio.from_dict(valid_state()).save(tmp_path / "clob.json")  # and replacing works too
    assert (tmp_path / "clob.tmp").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clob.json", "clob.tmp"]
    assert Portfolio.load(tmp_path / "clob.json").history == [0, 1, 0]


def test_a_state_that_cannot_be_saved_leaves_the_file_and_no_temporary_file(tmp_path):
    path = tmp_path / "s.json"
    Portfolio.from_dict(valid_state()).save(path)
    before = path.read_bytes()
    broken = Portfolio.from_dict(valid_state())
    broken.sums[0] = math.nan
    one_line_error(lambda: broken.save(path), "NaN")
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["s.json"]


# 3. locked against a second run (real processes)

HOLD = ("import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); "
        "sys.stdin.read()")


def test_a_second_run_on_a_locked_state_is_refused_in_one_line_and_loses_nothing(tmp_path):
    state = tmp_path / "s.json"
    search_online(state=state, batch=1, labels=[1], **TINY)
    before = state.read_bytes()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(state) + ".lock"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        second = run_cli("--online", str(state), *CLI_TINY, "--labels", "2,3", "--online-batch", "1",
                         "--out", str(tmp_path / "o2"))
        _, err = second.communicate(timeout=300)
        assert second.returncode == 1
        assert err.strip().splitlines() == [f"noisesearch: another run is learning in online state {state}: let it "
                                            "finish, or use another state file"]
        assert state.read_bytes() == before and not (tmp_path / "o2").exists()
    finally:
        holder.communicate("", timeout=60)
    again = run_cli("--online", str(state), *CLI_TINY, "--labels", "2,3", "--online-batch", "1",
                    "--out", str(tmp_path / "o2"))
    assert again.wait(timeout=300) == 0, again.stderr.read()
    learned = Portfolio.load(state)
    assert learned.batches == 3 and len(learned.history) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o2", "s.json"]  # the lock file went with the run


def test_two_concurrent_runs_never_lose_a_batch(tmp_path):
    state = tmp_path / "s.json"
    search_online(state=state, batch=1, labels=[1], **TINY)
    runs = [run_cli("--online", str(state), *CLI_TINY, "--labels", "2,3", "--online-batch", "1",
                    "--out", str(tmp_path / f"o{i}")) for i in range(2)]
    outcomes = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    finished = [code for code, _ in outcomes if code == 0]
    for code, err in outcomes:
        if code != 0:
            assert "another run is learning in online state" in err and len(err.strip().splitlines()) == 1, err
    learned = Portfolio.load(state)
    assert finished and learned.batches == 1 + 2 * len(finished) and len(learned.history) == learned.batches


# 4. bound to the settings that made it

def test_a_state_refuses_another_reward_or_sampler_and_migrates_format_1(tmp_path, monkeypatch):
    state = tmp_path / "s.json"
    search_online(state=state, batch=1, labels=[1], **TINY)
    data = json.loads(state.read_text())
    assert data["format"] == PORTFOLIO_FORMAT and data["settings"]["reward"] == "brightness"
    assert data["settings"]["sampler"]["steps"] == 6 and data["settings"]["backend"] == "embedded"
    before = state.read_bytes()
    one_line_error(lambda: search_online(state=state, batch=1, labels=[1], **(TINY | {"reward": "compressibility"})),
                   str(state), "learned with reward 'brightness', not 'compressibility'")
    one_line_error(lambda: search_online(state=state, batch=1, labels=[1], **(TINY | {"guidance": 2.0})),
                   "learned with guidance 1.0, not 2.0")
    one_line_error(lambda: search_online(state=state, batch=1, labels=[1], **(TINY | {"steps": 8})),
                   "learned with sampler steps 6, not 8")
    assert state.read_bytes() == before
    old = {k: v for k, v in data.items() if k != "settings"} | {"format": "noisesearch.online_portfolio/1"}
    state.write_text(json.dumps(old))
    search_online(state=state, batch=1, labels=[2], **(TINY | {"reward": "compressibility"}))  # adopts them
    migrated = json.loads(state.read_text())
    assert migrated["format"] == PORTFOLIO_FORMAT and migrated["settings"]["reward"] == "compressibility"
    assert migrated["batches"] == 2


# 5. validated field by field, before any compute

def edited(edit) -> dict:
    data = valid_state()
    edit(data)
    return data


BAD_STATES = [
    ("learners[0].prior_weight", lambda d: d["learners"][0].update(prior_weight=math.inf)),
    ("learners[1].sums[0][1]", lambda d: d["learners"][1]["sums"][0].__setitem__(1, math.nan)),
    ("learners[0].counts[1][0]", lambda d: d["learners"][0]["counts"][1].__setitem__(0, -1.0)),
    ("learners[0].counts[0][0]", lambda d: d["learners"][0]["counts"][0].__setitem__(0, 0.5)),
    ("history[1]", lambda d: d.update(history=[0, 7, 0])),
    ("history", lambda d: d.update(history=[0, 0, 0])),
    ("batches", lambda d: d.update(batches=1.7)),
    ("batches", lambda d: d.update(batches=-5)),
    ("batches", lambda d: d.update(batches=True)),
    ("learners[0].batches", lambda d: d["learners"][0].update(batches=10 ** 400)),
    ("counts", lambda d: d.update(counts=[2, 1, 0])),
    ("squares[0]", lambda d: d["squares"].__setitem__(0, -1.0)),
    ("learners[0].sums", lambda d: d["learners"][0]["sums"].pop()),
    ("learners[0].prior", lambda d: d["learners"][0]["prior"].update(eps=[0.5, 2.0])),
    ("learners[0].prior.sigmas[0]", lambda d: d["learners"][0]["prior"].update(sigmas=[-1.0, 0.5])),
    ("learners[0].prior", lambda d: d["learners"][0]["prior"]["info"].update(lambda_="x")),  # its info lambda_
    ("learners[1].credit", lambda d: d["learners"][1].update(credit="all")),
    ("settings", lambda d: d.pop("settings")),
    ("settings", lambda d: d.update(settings=[])),
    ("settings.reward", lambda d: d["settings"].update(reward=3)),
    ("learners", lambda d: d.update(learners=[])),
]


@pytest.mark.parametrize("field, edit", BAD_STATES, ids=[f for f, _ in BAD_STATES])
def test_every_bad_field_is_one_line_naming_the_file_and_the_field(tmp_path, field, edit):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(edited(edit)))
    one_line_error(lambda: Portfolio.load(path), f"online state '{path}'", f"field '{field}'")


@pytest.mark.parametrize("text", [b"[" * 100_000, b"{\"format\": \xff\xfe}", b"1" * 5000, b"{\"format\": "])
def test_deep_huge_and_undecodable_json_is_one_line(tmp_path, text):
    path = tmp_path / "s.json"
    path.write_bytes(text)
    one_line_error(lambda: Portfolio.load(path), str(path))


def test_a_bad_state_is_refused_before_the_model_loads(tmp_path, monkeypatch):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(edited(lambda d: d.update(batches=-5))))
    monkeypatch.setattr(online_driver, "make_problem", lambda **kw: pytest.fail("computed before checking"))
    one_line_error(lambda: search_online(state=path, batch=1, labels=[1], **TINY), "field 'batches'")
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


# 6. --online's directory first; --online-batch needs --online

def test_online_in_a_missing_directory_and_online_batch_alone_are_refused_first(tmp_path, capsys):
    out = tmp_path / "o"
    code, err = cli(capsys, "--online", str(tmp_path / "missing" / "s.json"), *CLI_TINY, "--labels", "1",
                    "--out", str(out))
    assert code == 1 and err.strip().splitlines() == [
        f"noisesearch: online state {tmp_path / 'missing' / 's.json'}: directory {tmp_path / 'missing'} does not "
        "exist; create it first"]
    code, err = cli(capsys, "--online-batch", "4", "--labels", "1", "--steps", "2", "--out", str(out))
    assert code == 1 and err.strip().splitlines() == [
        "noisesearch: --online-batch applies to --online runs: add --online STATE, or drop it"]
    assert listing(tmp_path) == {} and not out.exists()


# 7. a non-empty --out only with --overwrite, which removes the earlier run's files only

def test_a_rerun_into_the_same_out_needs_overwrite_and_replaces_only_the_runs_files(tmp_path, capsys):
    out = tmp_path / "o"
    naive = ["--algorithm", "naive", "--steps", "2", "--reward", "brightness", "--evaluator", "none",
             "--no-progress", "--out", str(out)]
    assert main(["sample", "--labels", "4,5", *naive]) == 0
    (out / "notes.txt").write_text("mine")
    (out / "images" / "keep.png").write_text("mine too")
    before = listing(out)
    code, err = cli(capsys, "--labels", "7", *naive)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "is not empty" in err and "--overwrite" in err
    assert listing(out) == before
    assert main(["sample", "--labels", "7", "--overwrite", *naive]) == 0
    assert sorted(listing(out)) == ["grid.png", "images/000_label7.png", "images/keep.png", "notes.txt",
                                    "result.json"]
    assert (out / "notes.txt").read_text() == "mine"
    assert [im["label"] for im in json.loads((out / "result.json").read_text())["images"]] == [7]


# 8. property-based: mutated state files load as a valid learner or fail in one line, writing nothing

LEAF = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.sampled_from([10 ** 400, -(10 ** 400)]),
                 st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
                 st.sampled_from([math.inf, -math.inf, math.nan, 1e300, -1e300, 1e101, 0.5, 1.7, -5, 0, 1, 199, 200]))
VALUE = st.recursive(LEAF, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                     max_leaves=6)
MUTATION = st.sampled_from(["delete", "replace", "wrap", "truncate_list", "nest", "duplicate_list"])


def containers(data, path=()):
    """Every (path, value) of the JSON tree, containers and leaves alike."""
    yield path, data
    if isinstance(data, dict):
        for key, value in data.items():
            yield from containers(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data[:4] + data[-1:]):  # the first entries and the last suffice
            yield from containers(value, (*path, i if i < 4 else len(data) - 1))


PATHS = [path for path, _ in containers(valid_state())]


def mutate(data, path, mutation, value):
    if not path:
        return value if mutation == "replace" else [data] if mutation == "wrap" else data
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    key, current = path[-1], parent[path[-1]]
    if mutation == "delete":
        del parent[key]
    elif mutation == "replace":
        parent[key] = value
    elif mutation == "wrap":
        parent[key] = [current]
    elif mutation == "nest":
        parent[key] = {"x": current}
    elif mutation == "truncate_list" and isinstance(current, list):
        parent[key] = current[: len(current) // 2]
    elif mutation == "duplicate_list" and isinstance(current, list):
        parent[key] = current + current[:1]
    else:  # a list operation on a leaf, or on an object: replace it
        parent[key] = value
    return data


def assert_valid(portfolio: Portfolio) -> None:
    """An independent check that what loaded is a learner that can be used and saved: every number finite,
    counts whole and non-negative, history in range and matching the counts."""
    A = len(portfolio.learners)
    assert A >= 1 and isinstance(portfolio.batches, int) and portfolio.batches >= 0
    assert all(isinstance(a, int) and 0 <= a < A for a in portfolio.history)
    assert np.array_equal(np.bincount(portfolio.history, minlength=A), portfolio.counts)
    for array in (portfolio.sums, portfolio.squares, portfolio.counts):
        assert array.shape == (A,) and np.isfinite(array).all()
    assert (portfolio.squares >= 0).all() and (portfolio.counts >= 0).all()
    for learner in portfolio.learners:
        S = len(learner.prior.steps)
        assert math.isfinite(learner.prior_weight) and learner.prior_weight > 0
        assert isinstance(learner.batches, int) and learner.batches >= 0 and learner.conditions >= 0
        assert learner.sums.shape == learner.counts.shape == (S, ITERATIONS)
        for array in (learner.sums, learner.squares, learner.counts, learner.global_wins, learner.local_wins,
                      learner.offered, learner.survived):
            assert np.isfinite(array).all()
        assert (learner.counts >= 0).all() and (learner.counts == np.round(learner.counts)).all()
        assert all(math.isfinite(s) and s > 0 for s in learner.prior.sigmas)
        mean, sd = learner.posterior()
        assert np.isfinite(mean).all() and np.isfinite(sd).all()
    assert len(portfolio.choose(3)) == 3
    json.dumps(portfolio.to_dict(), allow_nan=False)  # saves back as strict JSON


def load_checked(tmp: Path, text: bytes, seen: Counter, changed: bool = True) -> None:
    """Load `text` as a state file: a valid learner, or a one-line NoiseSearchError naming the file; either way
    the file is unchanged and nothing else is written."""
    folder = Path(tempfile.mkdtemp(dir=tmp))
    path = folder / "state.json"
    path.write_bytes(text)
    try:
        portfolio = Portfolio.load(path)
    except NoiseSearchError as err:
        message = str(err)
        assert "\n" not in message and str(path) in message, message
        seen["refused"] += 1
    else:
        assert_valid(portfolio)
        seen["accepted" if changed else "unchanged, accepted"] += 1
    assert path.read_bytes() == text and [p.name for p in folder.iterdir()] == ["state.json"]
    seen["inputs"] += 1


def test_mutated_state_files_load_valid_or_fail_in_one_line(tmp_path):
    seen: Counter = Counter()
    base = valid_state()

    @settings(max_examples=400, deadline=None, derandomize=True, database=None)
    @given(st.lists(st.tuples(st.sampled_from(PATHS), MUTATION, VALUE), min_size=1, max_size=3))
    def check(mutations):
        data = copy.deepcopy(base)
        for path, mutation, value in mutations:
            try:
                data = mutate(data, path, mutation, value)
            except (KeyError, IndexError, TypeError):
                continue  # an earlier mutation removed the path
        load_checked(tmp_path, json.dumps(data).encode(), seen, changed=data != base)

    check()
    print(f"mutated states: {dict(seen)}")
    assert seen["inputs"] == 400 and seen["refused"] > 250 and seen["accepted"] > 0


def test_truncated_and_corrupted_state_files_fail_in_one_line(tmp_path):
    seen: Counter = Counter()
    text = json.dumps(valid_state()).encode()

    @settings(max_examples=200, deadline=None, derandomize=True, database=None)
    @given(st.integers(0, len(text) - 1), st.binary(max_size=4))
    def check(cut, junk):
        load_checked(tmp_path, text[:cut] + junk, seen)

    check()
    print(f"truncated states: {dict(seen)}")
    assert seen["inputs"] == 200 and seen["accepted"] == 0


def test_the_valid_state_itself_loads_and_round_trips(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(valid_state()))
    portfolio = Portfolio.load(path)
    assert_valid(portfolio)
    assert portfolio.to_dict() == valid_state() and portfolio.settings == SETTINGS
    single = OnlineSchedule.from_dict(valid_state()["learners"][0])
    assert Portfolio.from_dict(single.to_dict()).settings is None  # a state from before portfolios: migrated
