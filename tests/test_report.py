"""`lm-eval-trust report` on hand-made results: missing dimension, partial score, non-trust task."""

import csv
import json
import math

import pytest
from report_fixtures import (
    advglue_config,
    advglue_docs,
    advglue_samples,
    compression,
    trust_results,
    write_run,
)

from lm_eval_trust.report import ReportError, report_main, write_report
from lm_eval_trust.report.comparison import DIMENSIONS, partial_reason
from lm_eval_trust.report.figures import dimension_scores
from lm_eval_trust.report.render import LEADERBOARD_COLUMNS
from lm_eval_trust.report.runs import load_runs

OTHER = [d for d in DIMENSIONS if d not in ("advglue", "toxicity", "stereotype")]
DOCS = advglue_docs(20)
RIGHT = ["positive" if d["glue_task"] == "sst2" else "yes" for d in DOCS]
SST2_WRONG = ["negative" if d["glue_task"] == "sst2" else "yes" for d in DOCS]
MINI = [{"doc_id": i, "doc_hash": f"m{i}", "acc": float(i % 3 != 0)} for i in range(30)]
N_SAMPLES = {"trust_advglue": {"original": 40, "effective": 40}, "mini": {"original": 30, "effective": 30}}


def run_results(advglue_score, stereotype=True, **others) -> tuple[dict, dict]:
    results = {
        "trust_advglue": trust_results("trust_advglue", advglue_score),
        "trust_toxicity": trust_results("trust_toxicity", 70.0, partial=1.0, refusal=2.5),
        **{f"trust_{d}": trust_results(f"trust_{d}", 60.0) for d in OTHER},
        "mini": {"alias": "mini", "acc,none": 0.2, "acc_stderr,none": 0.01},
        **others,
    }
    configs = {
        "trust_advglue": advglue_config(),
        "trust_toxicity": {
            "metadata": {
                "missing_components": ["gpt4_prompts"],
                "toxicity_scorer_used": {"name": "offline", "version": "v1"},
                "data_source": "decodingtrust_toxicity",
            }
        },
        "mini": {"task": "mini"},
    }
    if stereotype:
        results["trust_stereotype"] = trust_results("trust_stereotype", 90.0)
    return results, configs


@pytest.fixture
def runs_dir(tmp_path):
    root = tmp_path / "sweep"
    results, configs = run_results(100.0)
    write_run(
        root / "dense",
        "tiny",
        None,
        results,
        configs,
        {"trust_advglue": advglue_samples(DOCS, RIGHT), "mini": MINI},
        n_samples=N_SAMPLES,
    )
    results, configs = run_results(50.0)
    write_run(
        root / "gptq4",
        "tiny",
        compression("gptq", bits=4, group_size=64),
        results,
        configs,
        {"trust_advglue": advglue_samples(DOCS, SST2_WRONG), "mini": MINI},
        n_samples=N_SAMPLES,
    )
    results, configs = run_results(75.0, stereotype=False)
    write_run(root / "wanda", "tiny", compression("wanda", sparsity=0.5, structure="2:4"), results, configs)
    return root


def test_report_tables_intervals_notes_and_figures(runs_dir, tmp_path):
    out = tmp_path / "report"
    path = write_report([runs_dir], out, bootstrap_iters=200)
    assert path == out / "report.md"
    for png in ("radar.png", "compression.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    data = json.loads((out / "report.json").read_text())
    rows = {r["compression"]: r for r in data["rows"]}
    assert list(rows) == ["dense", "gptq 4-bit g64", "wanda 2:4 50%"] and data["baseline"] == "dense"
    gptq = rows["gptq 4-bit g64"]["cells"]
    # sst2 all wrong, qqp all right in every replicate: the interval is exactly the change.
    assert gptq["advglue"]["change"] == -50.0 and gptq["advglue"]["ci"] == [-50.0, -50.0]
    assert gptq["advglue"]["significant"] and gptq["advglue"]["paired_documents"] == 40
    assert gptq["mini"]["score"] == pytest.approx(20.0) and gptq["mini"]["ci"] == [0.0, 0.0]
    assert not gptq["mini"]["significant"]
    assert gptq["ethics"]["ci"] is None and gptq["ethics"]["ci_note"] == "no sample logs"
    assert gptq["mean"]["change"] == pytest.approx(-50 / 8) and gptq["mean"]["ci"] is None
    wanda = rows["wanda 2:4 50%"]["cells"]
    assert wanda["stereotype"]["score"] is None and "change" not in wanda["stereotype"]
    assert wanda["mean"]["score"] is None and wanda["mean"]["n_dimensions"] == 7
    assert wanda["mean"]["overall_available"] == pytest.approx((75 + 70 + 60 * 5) / 7)
    assert wanda["advglue"]["ci_note"] == "no sample logs"
    md = path.read_text()
    assert "**-50.0** \\[-50.0, -50.0] \\*" in md
    assert "70.0 (2.5) ᵖ" in md and "mini acc (x100)" in md
    assert "-6.2 (a dimension has no interval)" in md
    assert "| tiny | wanda 2:4 50% | 70.0 (2.5) ᵖ | – |" in md
    assert "Toxicity: partial score (missing: gpt4_prompts); not comparable to a full one (all models)." in md
    assert (
        "Toxicity scored by offline v1 (all models)" in md
        and "advglue_dev_fallback (not comparable to the paper)" in md
    )
    assert "![radar.png](radar.png)" in md
    assert rows["dense"]["cells"]["advglue"]["coverage"] == {
        "documents": 40,
        "documents_total": 40,
        "scenarios": 2,
        "scenarios_total": None,
    }
    assert "## Coverage" in md and "| tiny (baseline) | dense | – | – | 40/40 docs, 2 scenarios |" in md


def test_missing_dimensions_are_not_drawn_as_zero(runs_dir, tmp_path):
    write_report([runs_dir], tmp_path / "r", bootstrap_iters=100)
    rows = json.loads((tmp_path / "r" / "report.json").read_text())["rows"]
    wanda = dimension_scores(rows[2])
    assert math.isnan(wanda[DIMENSIONS.index("stereotype")])
    assert not any(math.isnan(v) for v in dimension_scores(rows[0]))


def test_leaderboard_columns(runs_dir, tmp_path):
    write_report([runs_dir], tmp_path / "lb", formats=["leaderboard"], bootstrap_iters=100)
    with open(tmp_path / "lb" / "leaderboard.csv") as f:
        rows = list(csv.DictReader(f))
    expected = ["Model", *LEADERBOARD_COLUMNS.values(), "Average", "Compression", "Coverage"]
    assert list(rows[0]) == expected
    assert list(LEADERBOARD_COLUMNS.values())[:3] == ["Toxicity", "Stereotype Bias", "Adversarial Robustness"]
    assert [r["Model"] for r in rows] == ["tiny", "tiny@gptq_4bit_64g", "tiny@wanda_0.5_2to4"]
    assert rows[0]["Adversarial Robustness"] == "100.0" and rows[2]["Stereotype Bias"] == ""
    assert rows[0]["Coverage"] == "40/40 docs, 2 scenarios" and rows[2]["Coverage"] == ""
    assert rows[2]["Average"] == "" and float(rows[0]["Average"]) == pytest.approx(
        (100 + 70 + 90 + 60 * 5) / 8
    )
    records = json.loads((tmp_path / "lb" / "leaderboard.json").read_text())
    assert list(records[0]) == expected and records[2]["Average"] is None


def test_baseline_must_be_unique_or_named(tmp_path):
    results, configs = run_results(100.0)
    write_run(tmp_path / "a", "one", None, results, configs, fingerprint="a")
    write_run(tmp_path / "b", "one", None, results, configs, fingerprint="b")
    with pytest.raises(ReportError, match="several dense runs"):
        write_report([tmp_path], tmp_path / "out")
    assert write_report([tmp_path], tmp_path / "out", baseline=str(tmp_path / "b")).is_file()
    assert json.loads((tmp_path / "out" / "report.json").read_text())["baseline"] == "dense #2"
    with pytest.raises(ReportError, match="matches no run"):
        write_report([tmp_path], tmp_path / "out", baseline="three")
    only = tmp_path / "pruned"
    write_run(only, "one", compression("magnitude", sparsity=0.5, structure="unstructured"), results, configs)
    with pytest.raises(ReportError, match="no dense baseline"):
        write_report([only], tmp_path / "out")


def test_measured_sparsity_is_not_dense(tmp_path):
    results, configs = run_results(100.0)
    write_run(tmp_path / "x", "m", None, results, configs, sparsity=0.5)
    (run,) = load_runs([tmp_path])
    assert not run.is_dense and run.compression_name == "pruned 50% measured"


def test_results_of_one_model_merge_by_task_newest_wins(tmp_path):
    results, configs = run_results(40.0)
    write_run(tmp_path, "m", None, results, configs, fingerprint="f", date="2026-01-01T00-00-00.0")
    newer = {"trust_advglue": trust_results("trust_advglue", 80.0)}
    write_run(tmp_path / "rerun", "m", None, newer, configs, fingerprint="f", date="2026-01-02T00-00-00.0")
    (run,) = load_runs([tmp_path])
    assert run.tasks["trust_advglue"].metric("score") == 80.0
    assert run.tasks["trust_ethics"].metric("score") == 60.0


def test_cli_errors_name_the_path(tmp_path, capsys):
    assert report_main([str(tmp_path / "nowhere"), "-o", str(tmp_path / "o")]) == 2
    assert "nowhere: no such file or folder" in capsys.readouterr().err
    bad = tmp_path / "results_x.json"
    bad.write_text("[]")
    assert report_main([str(bad), "-o", str(tmp_path / "o")]) == 2
    assert "not an lm-eval results file" in capsys.readouterr().err


@pytest.mark.parametrize("layout", ["breakdown", "results"])
def test_per_scenario_numbers_are_read_from_the_breakdown_or_older_results(tmp_path, layout):
    """Per-scenario scores sit in `configs[task].metadata.breakdown`; older files had them in `results`."""
    per_scenario = {"score_advglue_dev_sst2": 40.0, "score_advglue_dev_qqp": None}
    results = {"trust_advglue": trust_results("trust_advglue", 40.0, partial=1.0)}
    if layout == "breakdown":
        config = advglue_config(breakdown={**per_scenario, "score": 0.0})
    else:
        config = advglue_config()
        results["trust_advglue"].update({f"{k},none": v for k, v in per_scenario.items()})
    write_run(tmp_path, "m", None, results, {"trust_advglue": config})
    (run,) = load_runs([tmp_path])
    task = run.tasks["trust_advglue"]
    assert task.metric("score") == 40.0 and task.metric("score_advglue_dev_sst2") == 40.0
    assert partial_reason(task) == "scenarios without items: advglue_dev_qqp"


def test_cli_flags_use_underscores(runs_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = [str(runs_dir), "-o", str(out), "--format", "leaderboard", "--bootstrap_iters"]
    assert report_main([*argv, "100"]) == 0
    assert json.loads((out / "report.json").read_text())["bootstrap"]["iterations"] == 100
    with pytest.raises(SystemExit):
        report_main([str(runs_dir), "--bootstrap-iters", "100"])


@pytest.mark.parametrize("iters", [-1, 0, 1, 99])
def test_too_few_bootstrap_replicates_are_refused_naming_the_minimum(runs_dir, tmp_path, capsys, iters):
    """One replicate makes every interval a point, [+17.2, +17.2], and every change "significant"."""
    out = tmp_path / "out"
    argv = [str(runs_dir), "-o", str(out), "--bootstrap_iters", str(iters)]
    assert report_main(argv) == 2
    err = capsys.readouterr().err
    assert f"--bootstrap_iters {iters} is too few replicates for a 95% interval; use at least 100" in err
    assert "Traceback" not in err and not out.exists()
    with pytest.raises(ReportError, match=f"--bootstrap_iters {iters} is too few .* at least 100"):
        write_report([runs_dir], out, bootstrap_iters=iters)  # the sweep's way in
    assert not out.exists()


def test_a_negative_bootstrap_seed_is_refused(runs_dir, tmp_path, capsys):
    assert report_main([str(runs_dir), "-o", str(tmp_path / "out"), "--seed", "-1"]) == 2
    assert "--seed -1: a bootstrap seed is a whole number >= 0" in capsys.readouterr().err


@pytest.mark.parametrize("times", [1, 2])
def test_a_rescored_run_finds_the_other_tasks_sample_logs_in_its_original_folder(runs_dir, tmp_path, times):
    """`rescore` of one task writes only that task's log; the others' logs stay beside the original run."""
    from lm_eval_trust.rescore import rescore

    rescored = []
    for setting in ("dense", "gptq4"):
        source = runs_dir / setting
        for i in range(times):  # a rescored run rescored again: follow `rescored.from` back
            (log,) = source.glob("samples_trust_advglue_*.jsonl")
            (results,) = rescore([log], tmp_path / f"rescored{i}" / setting)
            source = results.parent
        assert not list(source.glob("samples_mini_*.jsonl"))
        rescored.append(source)
    out = tmp_path / "out"
    write_report(rescored, out, bootstrap_iters=100)
    gptq = json.loads((out / "report.json").read_text())["rows"][1]["cells"]
    assert gptq["advglue"]["ci"] == [-50.0, -50.0]  # from the rescored logs
    assert gptq["mini"]["ci"] == [0.0, 0.0] and gptq["mini"]["paired_documents"] == 30


def test_coverage_subsample_and_too_little_data_are_shown(tmp_path):
    """Recorded coverage beside each score; a subsample is marked; a score without data says why."""
    sample = {"docs_per_scenario": 3, "subsample_seed": 7}
    covered = {"documents": 6, "documents_total": 1200, "scenarios": 2, "scenarios_total": 3}
    for folder, compress, score in (("dense", None, 100.0), ("gptq", compression("gptq", bits=4), None)):
        insufficient = {} if score else {"score": "fewer than 2 scored documents in advglue_dev_qqp"}
        config = advglue_config(subsample=sample, coverage={**covered, "insufficient": insufficient})
        results = {"trust_advglue": trust_results("trust_advglue", score)}
        write_run(tmp_path / folder, "tiny", compress, results, {"trust_advglue": config})
    out = tmp_path / "out"
    md = write_report([tmp_path], out, formats=["markdown", "html", "leaderboard"]).read_text()
    assert "<h2>Coverage</h2>" in (out / "report.html").read_text()
    rows = json.loads((out / "report.json").read_text())["rows"]
    dense, gptq = rows[0]["cells"]["advglue"], rows[1]["cells"]["advglue"]
    assert dense["coverage"] == covered and dense["subsample"] == sample and dense["score"] == 100.0
    assert gptq["score"] is None and gptq["insufficient"].startswith("fewer than 2")
    assert "| tiny (baseline) | dense | – | – | 100.0 (0.0) ˢ |" in md
    assert "| tiny | gptq 4-bit g128 | – | – | too little data |" in md
    assert "| tiny | gptq 4-bit g128 | – | – | 6/1200 docs, 2/3 scenarios |" in md
    assert (
        "AdvGLUE++: too little data for a score (fewer than 2 scored documents in advglue_dev_qqp) "
        "(gptq 4-bit g128)." in md
    )
    assert "trust_advglue: a subsample of 3 documents per scenario (seed 7) (all models)." in md
    with open(out / "leaderboard.csv") as f:
        board = list(csv.DictReader(f))
    assert board[1]["Adversarial Robustness"] == ""
    assert board[1]["Coverage"] == (
        "6/1200 docs, 2/3 scenarios; a subsample of 3 documents per scenario (seed 7)"
    )


def test_a_per_scenario_subsample_is_described_pattern_by_pattern():
    from lm_eval_trust.report.coverage import subsample_text

    text = subsample_text({"docs_per_scenario": {"fairness_*": 3, "*": 2}, "subsample_seed": 0})
    assert text == "a subsample of each scenario's documents (3 in fairness_*; 2 in *; seed 0)"
    assert subsample_text({"docs_per_scenario": 4, "subsample_seed": 1}) == (
        "a subsample of 4 documents per scenario (seed 1)"
    )


def test_a_relative_rescored_from_is_found_from_another_folder(runs_dir, tmp_path, monkeypatch):
    """`rescored.from` is as rescore was given it: relative to where rescore ran, not where report runs."""
    from lm_eval_trust.rescore import rescore

    monkeypatch.chdir(tmp_path)
    for setting in ("dense", "gptq4"):
        (log,) = runs_dir.relative_to(tmp_path).joinpath(setting).glob("samples_trust_advglue_*.jsonl")
        rescore([log], tmp_path / "rescored" / setting)
    monkeypatch.chdir(tmp_path / "rescored")
    write_report([tmp_path / "rescored"], tmp_path / "out", bootstrap_iters=100)
    gptq = json.loads((tmp_path / "out" / "report.json").read_text())["rows"][1]["cells"]
    assert gptq["mini"]["ci"] == [0.0, 0.0]
