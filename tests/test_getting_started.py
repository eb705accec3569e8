"""Every code block of docs/getting-started.md runs: the install and test commands are the README's CI commands
(which .ci/run executes on a clean clone), every `noisesearch` command line runs here (the one marked "fails"
fails with one line), and the Python blocks run in order in one namespace."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from noisesearch.cli import main

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(text: str, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(text) if lang == language]


def commands(block: str) -> list[tuple[str, str]]:
    """(command, comment) of each line of a bash block."""
    found = []
    for line in block.strip().splitlines():
        command, _, comment = line.partition("#")
        found.append((command.strip(), comment.strip()))
    return found


def ci_commands(readme: str, marker: str) -> list[str]:
    block = readme.split(f"<!-- ci:{marker} -->", 1)[1]
    return [c.strip() for c in blocks(block, "bash")[0].split("&&")]


PAGE = (ROOT / "docs/getting-started.md").read_text()
README = (ROOT / "README.md").read_text()
INSTALL, FIRST, *MORE = blocks(PAGE, "bash")


def test_the_install_and_first_commands_are_those_ci_runs():
    setup, tests = ci_commands(README, "setup"), ci_commands(README, "test")
    install = [command for command, _ in commands(INSTALL)]
    assert " && ".join(install) == " && ".join(setup[:3])  # .ci/run runs them, then the tests
    first = [command for command, _ in commands(FIRST)]
    assert first == [setup[3], *tests]


@pytest.mark.parametrize("block", range(len(MORE)))
def test_every_command_line_runs(block, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for command, comment in commands(MORE[block]):
        program, *argv = shlex.split(command)
        assert program == "noisesearch"
        code = main(argv)
        err = capsys.readouterr().err
        if comment.startswith("fails"):
            assert code == 1 and err.count("\n") == 1 and err.startswith("noisesearch: "), command
            assert not Path(argv[argv.index("--out") + 1]).exists()
        else:
            assert code == 0, f"{command}: {err}"
            if "--out" in argv:
                assert (Path(argv[argv.index("--out") + 1]) / "result.json").is_file()


def test_the_python_blocks_run_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    python = blocks(PAGE, "python")
    assert len(python) >= 2
    for code in python:
        exec(compile(code, "getting-started.md", "exec"), namespace)  # noqa: S102 (the page's own examples)
    assert namespace["result"].nfe.tolist() == [72, 72, 72]  # the last block's comment says so
