"""noisesearch report: tables and plots from results files, partial runs, never rerunning anything."""

import json

import pytest
from conftest import tiny_denoiser

from noisesearch.cli import main
from noisesearch.experiments.bench import run_bench
from noisesearch.experiments.cells import Cell, preset_cells
from noisesearch.experiments.presets import Preset
from noisesearch.experiments.report import write_report
from noisesearch.experiments.runs import summarize
from noisesearch.experiments.store import Run

PRESET = {
    "description": "synthetic", "labels": 3, "repeats": 1, "steps": 4,
    "rewards": [{"name": "brightness", "reward": "brightness"}],
    "runs": [{"algorithm": "naive"}, {"algorithm": "best_of_n", "params": {"N": 2}},
             {"algorithm": "best_of_n", "params": {"N": 4}}],
}


def synthetic_run(tmp_path, drop_last=False, runs=PRESET["runs"]):
    """A run directory written by hand: rewards 0.1·k + label index, NFE from the algorithm."""
    preset = Preset.from_dict("synthetic", {**PRESET, "runs": runs})
    (tmp_path / "preset.json").write_text(json.dumps({"preset": preset.to_dict(), "seed": 0}))
    lines = []
    for k, cell in enumerate(preset_cells(preset)):
        n = cell.run.params.get("N", 1)
        for i in range(preset.labels):
            if drop_last and k == 2 and i == 2:
                continue
            lines.append(json.dumps({
                "cell": cell.key, "algorithm": cell.run.algorithm, "params": cell.run.params,
                "column": cell.column.name, "reward": cell.column.reward, "guidance": 1.0, "repeat": 0,
                "label_index": i, "label": i, "seed": i, "reward_value": 0.1 * k + 0.01 * i,
                "evaluator": 0.5, "nfe": 7 * n, "wall_time_s": 1.0, "cell_wall_time_s": 3.0, "steps": 4}))
    (tmp_path / "results.jsonl").write_text("\n".join(lines) + "\n")
    return preset


def test_summary_statistics_of_a_synthetic_results_file(tmp_path):
    synthetic_run(tmp_path)
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    stats = summarize(records)
    s = stats[("best_of_n (N=4)", "brightness")]
    assert s["n"] == 3 and s["nfe"] == 28
    assert s["mean"] == pytest.approx(0.21)
    assert s["std"] == pytest.approx(0.01)
    assert s["se"] == pytest.approx(0.01 / 3**0.5)


def test_report_of_a_synthetic_run_has_table_and_scaling_plot(tmp_path):
    synthetic_run(tmp_path)
    md, page = write_report(tmp_path)
    text = md.read_text()
    assert "| best_of_n (N=4) | 0.2100 ± 0.010" in text
    assert "Partial run" not in text
    assert "EDM on ImageNet" in text and "0.9885" in text  # the brief's table, labelled
    assert (tmp_path / "report" / "scaling_brightness.png").exists()
    assert "data:image/png;base64," in page.read_text()


def test_report_of_a_partial_run_says_what_is_missing(tmp_path):
    synthetic_run(tmp_path, drop_last=True)
    text = write_report(tmp_path)[0].read_text()
    assert "Partial run" in text and "best_of_n (N=4) / brightness / repeat 0: 2 of 3 labels" in text


def test_report_reads_traces_and_images_of_a_real_small_bench(tmp_path):
    preset = Preset.from_dict("small", {
        "labels": 3, "steps": 6, "rewards": [{"name": "brightness", "reward": "brightness"}],
        "runs": [{"algorithm": "naive"}, {"algorithm": "eps_greedy", "params": {"N": 2, "K": 3}}]})
    run_bench(preset, tmp_path, progress=False, model_loader=lambda w: tiny_denoiser(w))
    assert Cell(preset.runs[1], preset.rewards[0], 0).slug.startswith("eps_greedy")
    text = write_report(tmp_path)[0].read_text()
    for figure in ["kbar_brightness.png", "incumbent_brightness.png", "grid_naive__brightness__r0.png"]:
        assert figure in text and (tmp_path / "report" / figure).exists()


def test_report_errors_are_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    assert "holds no results.jsonl" in capsys.readouterr().err


def test_report_out_that_is_a_file_or_the_run_directory_is_one_line(tmp_path, capsys):
    synthetic_run(tmp_path)
    target = tmp_path / "notes.txt"
    target.write_text("x")
    assert main(["report", str(tmp_path), "--out", str(target)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"noisesearch: --out {target} is a file: give a directory for the report"
    assert main(["report", str(tmp_path), "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip().startswith(f"noisesearch: --out {tmp_path} is the run directory")
    assert target.read_text() == "x" and not (tmp_path / "report").exists()


def test_report_only_reads_the_run_even_with_a_torn_last_line_and_duplicates(tmp_path):
    from conftest import tiny_denoiser

    from noisesearch.experiments.store import read_results

    preset = Preset.from_dict("small", {**PRESET, "labels": 2, "runs": PRESET["runs"][:2]})
    results = run_bench(preset, tmp_path, progress=False, model_loader=tiny_denoiser)
    complete = results.read_text().splitlines()
    results.write_text("\n".join([*complete, complete[0]]) + "\n" + complete[1][:25])  # a duplicate, a torn line
    run_files = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    md, _ = write_report(tmp_path)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "report" not in p.parts} == run_files
    text = md.read_text()
    assert "1 duplicate lines of results.jsonl are left out" in text and "is incomplete" in text
    assert f"{len(complete)} results from" in text and "Partial run" not in text
    assert len(read_results(results)) == len(complete)


def test_adaptive_section_measures_gain_kept_and_nfe_against_eps_greedy(tmp_path):
    from noisesearch.experiments.sections import adaptive

    def record(algorithm, params, value, nfe):
        return {"algorithm": algorithm, "params": params, "column": "c", "reward_value": value, "evaluator": 0.5,
                "nfe": nfe, "wall_time_s": 1.0}

    reference = {"N": 4, "K": 20, "lambda_": 0.15, "eps": 0.4}
    records = [record("naive", {}, 0.2, 35), record("eps_greedy", reference, 0.6, 1049),
               record("best_of_n", {"N": 8}, 0.45, 280), record("best_of_n", {"N": 16}, 0.55, 560),
               record("adaptive_eps_greedy", {"search_schedule": "calibrated", "target_nfe": 280}, 0.58, 280),
               record("adaptive_eps_greedy", {"search_schedule": "calibrated:b", "target_nfe": 280}, 0.40, 280)]
    blocks = adaptive.blocks(Run(tmp_path, records, None, None, {}), tmp_path)
    rows = {row[1]: row for row in blocks[2].rows}
    own = rows["adaptive_eps_greedy (search_schedule=calibrated, target_nfe=280)"]
    assert own[5:11] == ["0.267", "95.0 %", "-0.0200", "best_of_n (N=8)", "0.4500", "yes"]
    transfer = rows["adaptive_eps_greedy (search_schedule=calibrated:b, target_nfe=280)"]
    assert transfer[6] == "50.0 %" and transfer[10] == "no"
    assert not adaptive.applies(Run(tmp_path, records[:4], None, None, {}))


def test_the_validated_candidates_are_listed_and_the_kept_one_marked():
    from noisesearch.experiments.sections.adaptive import candidate_blocks

    def candidate(N, K, B, reward):
        return {"N": N, "K": K, "eps": 0.4, "lambda_": 0.15, "B": B, "expected_gain": 0.1, "validation_reward": reward}

    info = {"N": 1, "K": 80, "eps": 0.4, "lambda_": 0.15, "B": 2,
            "candidates": [candidate(4, 20, 1, 0.5), candidate(1, 80, 1, 0.6), candidate(1, 80, 2, 0.7)]}
    table = candidate_blocks({"brightness": {"info": info}, "classifier": {"info": {"N": 4}}})[-1]
    assert [row[-1] for row in table.rows] == ["", "", "kept"] and table.rows[2][7] == "0.7000"
    assert candidate_blocks({"classifier": {"info": {"N": 4}}}) == []


def families_record(algorithm, params, i, value, nfe):
    return {"algorithm": algorithm, "params": params, "column": "brightness", "reward_value": value,
            "evaluator": 0.5 + 0.1 * i, "nfe": nfe, "wall_time_s": 1.0, "label_index": i, "repeat": 0}


def test_families_table_names_the_best_method_per_budget_with_paired_margins():
    from noisesearch.experiments.sections.families import budget_of, families_table

    records = []
    for i in range(3):
        records += [families_record("naive", {}, i, 0.1, 35),
                    families_record("best_of_n", {"N": 2}, i, 0.3 + 0.01 * i, 70),
                    families_record("eps_greedy", {"N": 2, "K": 1}, i, 0.35, 72),
                    families_record("smc", {"particles": 2}, i, 0.4 + 0.02 * i, 70),
                    families_record("best_of_n", {"N": 4}, i, 0.5, 140),
                    families_record("smc", {"particles": 4}, i, 0.45 + 0.01 * i, 139)]
    assert budget_of(72, (70, 140)) == 70 and budget_of(35, (70, 140)) is None and budget_of(150, (70, 140)) is None
    table = families_table(records, (70, 140))
    header, rows = table.header, table.rows
    assert header[:4] == ["reward", "budget", "best method", "reward ± se"]
    assert len(rows) == 2  # naive lies at no budget
    low, high = rows
    assert low[:3] == ["brightness", "70", "smc (particles=2)"] and low[3] == "0.4200 ± 0.0115" and low[4] == "0.600"
    assert low[6] == "eps_greedy (N=2, K=1)" and low[7] == "+0.0700 ± 0.0115"  # per-label 0.05, 0.07, 0.09
    assert low[8] == "smc (particles=2)" and low[10] == "+0.0700 ± 0.0115" and low[11] == "—"
    assert high[2] == "best_of_n (N=4)" and high[6] == "smc (particles=4)" and high[7] == "+0.0400 ± 0.0058"
    assert high[10] == "—"  # no ε-greedy run at 140


def test_report_of_a_tiny_real_families_run_has_the_plot_and_the_table(tmp_path):
    preset = Preset.from_dict("tiny_families", {
        "labels": 2, "steps": 4, "target_nfes": [14], "rewards": [{"name": "brightness", "reward": "brightness"}],
        "runs": [{"algorithm": "naive"}, {"algorithm": "best_of_n", "params": {"N": 2}},
                 {"algorithm": "smc", "params": {"particles": 2}},
                 {"algorithm": "evo", "params": {"population": [1, 1], "evolution_steps": [0], "elites": 1}},
                 {"algorithm": "rbf", "params": {"target_nfe": 14, "init_particles": 1}}]})
    run_bench(preset, tmp_path, progress=False, model_loader=lambda w: tiny_denoiser(w))
    text = write_report(tmp_path)[0].read_text()
    assert "## Families at matched NFE" in text and (tmp_path / "report" / "families_brightness.png").exists()
    row = next(line for line in text.splitlines() if line.startswith("| brightness | 14 |"))
    assert row.count("|") == 13 and "naive" not in row
    no_budgets = Preset.from_dict("plain", {**PRESET, "labels": 2})
    run_bench(no_budgets, tmp_path / "plain", progress=False, model_loader=tiny_denoiser)
    assert "Families at matched NFE" not in write_report(tmp_path / "plain")[0].read_text()


def test_stream_section_counts_calibration_up_front_and_checks_the_targets(tmp_path):
    from noisesearch.experiments.document import Table
    from noisesearch.experiments.sections import stream as section
    from noisesearch.experiments.sections.stream import WARMUP

    def stream(algorithm, params, value, nfe, labels=WARMUP + 4):
        return [{"algorithm": algorithm, "params": params, "column": "c", "repeat": 0, "label_index": k,
                 "reward_value": value(k), "evaluator": 0.5, "nfe": nfe, "wall_time_s": 1.0} for k in range(labels)]

    (tmp_path / "schedules").mkdir()
    (tmp_path / "schedules" / "c.json").write_text(json.dumps({"info": {"calibration_nfe": 50_000}}))
    reference = {"N": 4, "K": 20, "lambda_": 0.15, "eps": 0.4}
    online = {"target_nfe": 367, "stream_batch": 16}
    records = (stream("naive", {}, lambda k: 0.2, 35) + stream("eps_greedy", reference, lambda k: 0.6, 1000)
               # online: learns during warm-up, then keeps all the gain
               + stream("online_adaptive_eps_greedy", online, lambda k: 0.3 if k < WARMUP else 0.6, 350)
               + stream("adaptive_eps_greedy", {"search_schedule": "calibrated", "target_nfe": 367},
                        lambda k: 0.58, 350))
    blocks = section.blocks(Run(tmp_path, records, None, None, {}), tmp_path)
    rows = {row[1]: row for row in blocks[2].rows}
    learned = rows["online_adaptive_eps_greedy (target_nfe=367, stream_batch=16)"]
    assert learned[3] == "0" and learned[5].startswith("100.0 %") and learned[6:] == ["0.350", "0.350", "yes"]
    offline = rows["adaptive_eps_greedy (search_schedule=calibrated, target_nfe=367)"]
    assert offline[3] == "50000" and offline[5].startswith("95.0 %")
    assert offline[7] == f"{(50_000 + 350 * (WARMUP + 4)) / (1000 * (WARMUP + 4)):.3f}" and offline[8] == "no"
    assert (tmp_path / "stream.png").is_file()
    assert not section.applies(Run(tmp_path, records[:2 * (WARMUP + 4)], None, None, {}))  # none learns across labels
    for r in records:  # the online run's arms: "a" in its first two labels, "b" after
        if r["algorithm"] == "online_adaptive_eps_greedy":
            r["arm"] = "a" if r["label_index"] < 2 else "b"
    arms = section.blocks(Run(tmp_path, records, None, None, {}), tmp_path)[-1]
    assert isinstance(arms, Table) and [row[2:] for row in arms.rows] == [["a", "2", "0", "—"],
                                                                         ["b", str(WARMUP - 2), "4", "0.6000"]]


def calibration_run(directory, calibration_nfe, adaptive_gain, validation_conditions):
    """A run directory by hand: naive 0.2, ε-greedy (4, 20) 0.6 and adaptive 0.2 + adaptive_gain on 8 labels,
    with the schedule info a calibration writes."""
    runs = [("naive", {}, 0.2, 35), ("eps_greedy", {"N": 4, "K": 20, "lambda_": 0.15, "eps": 0.4}, 0.6, 1000),
            ("adaptive_eps_greedy", {"search_schedule": "calibrated", "target_nfe": 367}, 0.2 + adaptive_gain, 350)]
    lines = [json.dumps({"cell": algorithm, "algorithm": algorithm, "params": params, "column": "c",
                         "reward": "brightness", "guidance": 1.0, "repeat": 0, "label_index": k, "label": k,
                         "seed": k, "reward_value": value + 0.01 * k * (algorithm != "naive"), "evaluator": 0.5,
                         "nfe": nfe, "wall_time_s": 1.0, "steps": 18})
             for algorithm, params, value, nfe in runs for k in range(8)]
    (directory / "schedules").mkdir(parents=True)
    (directory / "results.jsonl").write_text("\n".join(lines) + "\n")
    move = {"N": 4, "eps": 1.0, "lambda_": 0.15}
    info = {"calibration_nfe": calibration_nfe, "conditions": 5, **move, "B": 1,
            "candidates": [move, {**move, "eps": 0.3}], "validation_conditions": validation_conditions}
    (directory / "schedules" / "c.json").write_text(json.dumps({"info": info}))
    return directory


def test_tradeoff_report_puts_each_calibration_at_its_cost_and_gain_kept(tmp_path, capsys):
    from noisesearch.experiments.tradeoff_report import tradeoff_points

    cheap = calibration_run(tmp_path / "cheap", 20_000, 0.36, 0)  # (0.36 + 0.01k) / (0.4 + 0.01k) over 8 labels
    dear = calibration_run(tmp_path / "dear", 200_000, 0.4, 64)
    (point,) = tradeoff_points(cheap)
    assert point["calibration_nfe"] == 20_000 and point["labels"] == 8
    assert point["gain_kept"] == pytest.approx((0.36 + 0.035) / (0.4 + 0.035)) and point["se"] > 0
    assert point["nfe_ratio"] == pytest.approx(0.35) and "2 moves, no validation" in point["recipe"]
    assert "validated on 64" in tradeoff_points(dear)[0]["recipe"]
    assert tradeoff_points(dear)[0]["gain_kept"] == pytest.approx(1.0)
    assert main(["report", str(cheap), str(dear), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert text.index("20,000") < text.index("200,000") and (tmp_path / "out" / "tradeoff.png").is_file()
    assert main(["report", str(cheap), str(dear)]) == 1
    assert "--out" in capsys.readouterr().err


def test_the_r_of_reliability_calibrated_schedules_is_plotted_and_only_theirs(tmp_path):
    from noisesearch.experiments.sections.adaptive import reliability_blocks

    rows = [{"sigma": s, "R": r, "lo": r - 0.1, "hi": r + 0.1} for s, r in ((10.0, 0.1), (1.0, 0.6), (0.1, 0.9))]
    blocks = reliability_blocks({"a": {"info": {"reliability": rows}}, "b": {"info": {}}}, tmp_path / "out")
    assert blocks[0].text.startswith("R(σ)") and blocks[2].path == tmp_path / "out" / "reliability.png"
    assert blocks[2].path.stat().st_size > 0
    assert reliability_blocks({"b": {"info": {}}}, tmp_path / "none") == []


def test_a_new_algorithm_is_one_class_and_its_contract_case_and_a_new_section_one_module(tmp_path, monkeypatch):
    from types import ModuleType

    from noisesearch.experiments import sections
    from noisesearch.experiments.document import Heading, Paragraph
    from noisesearch.experiments.runs import family
    from noisesearch.search import registry
    from noisesearch.search.best_of_n import BestOfN
    from noisesearch.testing import Contract

    class Throwaway(BestOfN):
        name = "throwaway_schedule"
        family = "adaptive"

    monkeypatch.setattr(registry, "_ALGORITHMS", dict(registry._ALGORITHMS))
    registry.register_algorithm(Throwaway)
    Contract(registry.get_algorithm("throwaway_schedule", N=2)).check_all()  # its contract case
    section = ModuleType("throwaway_section")  # a section is any object with applies and blocks, a module here
    section.applies = lambda run: run.preset is not None
    section.blocks = lambda run, out: [Heading(2, "Throwaway section"),
                                       Paragraph(", ".join(sorted({family(r["algorithm"]) for r in run.records})))]
    monkeypatch.setattr(sections, "SECTIONS", list(sections.SECTIONS))
    sections.register_section(section)
    synthetic_run(tmp_path, runs=[{"algorithm": "naive"}, {"algorithm": "throwaway_schedule", "params": {"N": 2}}])
    text = write_report(tmp_path)[0].read_text()
    assert text.rstrip().endswith("## Throwaway section\n\nadaptive, baseline")
    adaptive = text[text.index("## Adaptive ε-greedy at matched compute"):]  # the family's section applies
    assert "| brightness | throwaway_schedule (N=2) | 0.1100 ± 0.006 |" in adaptive
