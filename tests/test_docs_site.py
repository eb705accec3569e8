"""The documentation site builds in strict mode (a broken link, a missing anchor or an unresolved API reference
fails it), with the API reference generated from the docstrings and the committed reports as pages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_site_builds_strictly_with_the_api_reference_and_the_reports(tmp_path):
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                          capture_output=True, text=True, env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    problem = (site / "api/problem/index.html").read_text()
    assert "noisesearch.problem.Problem" in problem and "metered" in problem  # from the class's docstring
    report = (site / "results/table1/report/index.html").read_text()
    figures = [line.split('src="', 1)[1].split('"', 1)[0] for line in report.split("<img")[1:]]
    assert figures and all((site / "results/table1/report" / f).resolve().is_file() for f in figures)
    assert (site / "getting-started/index.html").is_file() and (site / "search/search_index.json").is_file()
    initial = (site / "algorithms/initial/index.html").read_text()  # a family page, made from the registry
    assert "arXiv 2501.09732" in initial and "best_of_n (N=4)" in initial and "zero_order_initial" in initial
