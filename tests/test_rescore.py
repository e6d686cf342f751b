"""`lm-eval-trust rescore`: scores recomputed from raw responses, options changed, bad input refused."""

import json
import shutil

import pytest
from conftest import run_script, task_config
from report_fixtures import (
    ADVGLUE_SCENARIOS,
    advglue_config,
    advglue_docs,
    advglue_samples,
    trust_results,
    write_run,
)

from lm_eval_trust.data import DataRoot
from lm_eval_trust.dimension import document_row, interleave
from lm_eval_trust.report import write_report
from lm_eval_trust.rescore import RescoreError, rescore, rescore_main
from lm_eval_trust.tasks.advglue import advglue
from lm_eval_trust.tasks.stereotype import stereotype


def read_output(out):
    (results,) = out.rglob("results_*.json")
    samples = {p.name.split("_2")[0]: p for p in out.rglob("samples_*.jsonl")}
    return json.loads(results.read_text()), samples


def test_advglue_is_recomputed_from_raw_responses(tmp_path):
    docs = advglue_docs(3)  # sst2, qqp alternating
    answers = ["positive", "no", "negative", "yes", "unsure", "yes"]
    lines = advglue_samples(docs, answers)
    for line in lines:  # logged items that claim every answer was right: rescore must not trust them
        line["score"] = {**line["score"], "pred": 1}
    run = tmp_path / "run" / "model"
    results = {"trust_advglue": trust_results("trust_advglue", 100.0)}
    write_run(run, "m", None, results, {"trust_advglue": advglue_config()}, {"trust_advglue": lines})
    (path,) = rescore([tmp_path / "run"], tmp_path / "out")
    assert path.parent == tmp_path / "out"
    data, samples = read_output(tmp_path / "out")
    items = [advglue.score_item(d, [a]) for d, a in zip(docs, answers, strict=True)]
    expected = advglue.aggregate(items, ADVGLUE_SCENARIOS)
    assert expected["score"] == pytest.approx(50.0)  # sst2 1/3 (one unparsable), qqp 2/3
    got = data["results"]["trust_advglue"]
    assert got["score,none"] == pytest.approx(expected["score"]) and got["score_stderr,none"] == "N/A"
    assert got["refusal_rate,none"] == pytest.approx(expected["refusal_rate"])
    assert data["configs"]["trust_advglue"]["metadata"]["rescored"]["changed_options"] == {}
    logged = [json.loads(x) for x in samples["samples_trust_advglue"].read_text().splitlines()]
    assert [x["score"]["pred"] for x in logged] == [1, 0, 0, 1, -1, 1]
    # The report reads the rescored run (a single dense model is its own baseline).
    report = json.loads(
        (write_report([tmp_path / "out"], tmp_path / "rep").parent / "report.json").read_text()
    )
    assert report["rows"][0]["cells"]["advglue"]["score"] == pytest.approx(50.0)


def stereotype_run(root, data_dir):
    """A run of 6 real stereotype documents answered so that the fork and upstream classifiers differ."""
    metadata = {
        **task_config("stereotype")["metadata"],
        "dimension": "lm_eval_trust.tasks.stereotype.stereotype",
        "data_dir": str(data_dir),
    }
    loaded = stereotype.load(DataRoot(str(data_dir)), metadata)
    metadata["scenarios_run"] = loaded.default_scenarios
    docs = interleave(loaded.docs, loaded.default_scenarios)[:6]
    lines = []
    for i, doc in enumerate(docs):
        doc, _ = document_row(doc, i)
        gens = ["I agree", "I disagree."]  # fork: one agreement; upstream: none ("I agree" unmatched)
        item = stereotype.score_item(doc, gens)
        lines.append({"doc_id": i, "doc": doc, "resps": [gens], "metrics": ["score"], "score": item})
    items = [x["score"] for x in lines]
    score = stereotype.aggregate(items, metadata["scenarios_run"])["score"]
    results = {"trust_stereotype": trust_results("trust_stereotype", score)}
    configs = {"trust_stereotype": {"task": "trust_stereotype", "metadata": metadata}}
    write_run(root, "m", None, results, configs, {"trust_stereotype": lines})
    return score


def test_changing_a_scoring_option_changes_the_score(tmp_path, shared_data):
    logged = stereotype_run(tmp_path / "run", shared_data)
    rescore([tmp_path / "run"], tmp_path / "same")
    same, _ = read_output(tmp_path / "same")
    assert same["results"]["trust_stereotype"]["score,none"] == pytest.approx(logged)
    assert (
        rescore_main(
            [
                str(tmp_path / "run"),
                "-o",
                str(tmp_path / "up"),
                "--metadata",
                '{"stereotype_classifier": "upstream"}',
            ]
        )
        == 0
    )
    upstream, samples = read_output(tmp_path / "up")
    assert upstream["results"]["trust_stereotype"]["score,none"] != pytest.approx(logged)
    meta = upstream["configs"]["trust_stereotype"]["metadata"]
    assert meta["stereotype_classifier"] == "upstream" and meta["comparable_to_paper"] is False
    line = json.loads(samples["samples_trust_stereotype"].read_text().splitlines()[0])
    assert line["doc"]["classifier"] == "upstream"
    with pytest.raises(RescoreError, match="different prompt"):
        rescore([tmp_path / "run"], tmp_path / "x", {"dedupe_task_desc": True})


def test_bad_input_is_refused_with_the_file_named(tmp_path, capsys):
    run = tmp_path / "run"
    write_run(
        run, "m", None, {"mini": {"acc,none": 1.0}}, {"mini": {"task": "mini"}}, {"mini": [{"doc_id": 0}]}
    )
    (sample,) = run.glob("samples_mini_*.jsonl")
    assert rescore_main([str(sample), "-o", str(tmp_path / "o")]) == 2
    assert "mini is not a trust task" in capsys.readouterr().err
    lonely = tmp_path / "lonely" / "samples_trust_advglue_2026-01-01T00-00-00.0.jsonl"
    lonely.parent.mkdir()
    lonely.write_text("{}\n")
    assert rescore_main([str(lonely), "-o", str(tmp_path / "o")]) == 2
    assert "no results_<date>.json of the same run beside it" in capsys.readouterr().err
    with pytest.raises(RescoreError, match="n_samples"):
        rescore([run], tmp_path / "o", {"n_samples": 3})


# -- a subsampled run, and logs that are not the run's whole log ------------------------------------

SUBSAMPLE = {
    "scenarios": ["advglue_dev_sst2", "advglue_dev_qqp", "stereotype_benign"],
    "docs_per_scenario": 4,
    "n_samples": 1,
}


@pytest.fixture(scope="module")
def subsampled_run(shared_data, trust_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("subsampled") / "out"
    args = ["--model", "trust-scripted", "--tasks", "trust_advglue,trust_stereotype"]
    args += ["--metadata", json.dumps(SUBSAMPLE), "--log_samples", "--output_path", str(out)]
    run_script(shared_data, trust_cache, "lm-eval-trust", *args)
    return out


def _copy(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    (results,) = (tmp_path / "run").rglob("results_*.json")
    logs = {p.name.split("_20")[0][len("samples_") :]: p for p in (tmp_path / "run").rglob("samples_*.jsonl")}
    return results, logs


def test_a_subsampled_run_is_rescored_on_the_same_documents(
    subsampled_run, tmp_path, shared_data, monkeypatch
):
    monkeypatch.setenv("TRUST_DATA_DIR", str(shared_data))
    run = json.loads(next(subsampled_run.rglob("results_*.json")).read_text())
    meta = run["configs"]["trust_stereotype"]["metadata"]
    assert meta["subsample"] == {"docs_per_scenario": 4, "subsample_seed": 0}
    (path,) = rescore([subsampled_run], tmp_path / "same")
    same = json.loads(path.read_text())
    for task in ("trust_advglue", "trust_stereotype"):
        assert same["results"][task]["score,none"] == run["results"][task]["score,none"]
        assert same["configs"][task]["metadata"]["coverage"] == run["configs"][task]["metadata"]["coverage"]
        assert (
            same["configs"][task]["metadata"]["comparability"]
            == run["configs"][task]["metadata"]["comparability"]
        )
    # A scoring option rebuilds the documents from the data: the same draw must come out.
    (path,) = rescore([subsampled_run], tmp_path / "up", {"stereotype_classifier": "upstream"})
    upstream = json.loads(path.read_text())["configs"]["trust_stereotype"]["metadata"]
    assert upstream["coverage"] == meta["coverage"] and upstream["stereotype_classifier"] == "upstream"
    with pytest.raises(RescoreError, match=r"docs_per_scenario.*run the evaluation again"):
        rescore([subsampled_run], tmp_path / "x", {"docs_per_scenario": 2})


def test_a_log_cut_at_a_line_end_is_refused_with_the_missing_count(subsampled_run, tmp_path):
    results, logs = _copy(subsampled_run, tmp_path)
    lines = logs["trust_advglue"].read_text().splitlines(keepends=True)
    assert len(lines) == 8
    logs["trust_advglue"].write_text("".join(lines[:3]))
    message = (
        rf"{logs['trust_advglue'].name}: 3 lines, but {results.name} says the run scored 8 documents "
        r"\(configs.<task>.metadata.comparability.documents\): 5 lines are missing"
    )
    with pytest.raises(RescoreError, match=message):
        rescore([tmp_path / "run"], tmp_path / "out")
    # An older results file records neither coverage nor comparability: lm-eval's n-samples decides.
    data = json.loads(results.read_text())
    for config in data["configs"].values():
        config["metadata"].pop("coverage")
        config["metadata"].pop("comparability")
    results.write_text(json.dumps(data))
    with pytest.raises(
        RescoreError, match=r"scored 8 documents \(n-samples.<task>.effective\): 5 lines are missing"
    ):
        rescore([tmp_path / "run"], tmp_path / "out")


def _other_prompt(line: str) -> str:
    sample = json.loads(line)
    sample["doc"]["messages_sha256"] = "0" * 64
    return json.dumps(sample) + "\n"


def test_duplicated_foreign_and_cut_lines_are_refused(subsampled_run, tmp_path):
    _, logs = _copy(subsampled_run, tmp_path)
    advglue_log = logs["trust_advglue"]
    lines = advglue_log.read_text().splitlines(keepends=True)
    foreign = logs["trust_stereotype"].read_text().splitlines(keepends=True)[0]
    cases = {
        "duplicated": (lines[:7] + [lines[2]], r"lines 3 and 8 log the same document \(doc_index \d+\)"),
        "foreign": (lines[:7] + [foreign], r"line 8 holds a document of scenario 'stereotype_benign'"),
        "cut": (lines[:7] + [lines[7][:40]], r":8 is not valid JSON"),
        "another prompt": (lines[:7] + [_other_prompt(lines[7])], r"comparability.documents_sha256 differs"),
    }
    for name, (content, message) in cases.items():
        advglue_log.write_text("".join(content))
        with pytest.raises(RescoreError, match=message):
            rescore([tmp_path / "run"], tmp_path / name)
