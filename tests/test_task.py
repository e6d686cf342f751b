"""TrustTask: interleaving for `--limit`, scenario selection, coverage and comparability records,
and the generation settings a run actually uses."""

import json

import pytest
from conftest import read_results, run_script
from test_bad_input_data import load_task

from lm_eval_trust.dimension import (
    DIGEST,
    Loaded,
    Scores,
    TaskConfigError,
    coverage,
    documents_identity,
    interleave,
    select_scenarios,
)


def _docs(counts):
    return [{"scenario": s, "i": i} for s, n in counts.items() for i in range(n)]


def test_interleave_round_robins_so_a_prefix_covers_every_scenario():
    docs = interleave(_docs({"a": 3, "b": 1, "c": 2}), ["a", "b", "c"])
    assert [(d["scenario"], d["i"]) for d in docs] == [
        ("a", 0),
        ("b", 0),
        ("c", 0),
        ("a", 1),
        ("c", 1),
        ("a", 2),
    ]


def test_interleave_drops_unselected_scenarios():
    assert {d["scenario"] for d in interleave(_docs({"a": 2, "b": 2}), ["b"])} == {"b"}


LOADED = Loaded(docs=[], scenarios=["x_a", "x_b", "x_c"], default_scenarios=["x_a", "x_b"])


def test_default_scenarios_when_none_requested():
    assert select_scenarios(None, LOADED, "x_", "t") == ["x_a", "x_b"]


def test_requested_scenarios_keep_data_order_and_ignore_other_dimensions():
    assert select_scenarios(["x_c", "x_a", "y_z"], LOADED, "x_", "t") == ["x_a", "x_c"]
    assert select_scenarios("x_c", LOADED, "x_", "t") == ["x_c"]
    assert select_scenarios(["y_z"], LOADED, "x_", "t") == ["x_a", "x_b"]


def test_unknown_scenario_is_named_with_the_valid_ones():
    with pytest.raises(TaskConfigError, match=r"x_nope.*x_a, x_b, x_c"):
        select_scenarios(["x_nope"], LOADED, "x_", "trust_x")


# -- coverage: what the numbers stand on ------------------------------------------------------------


def test_coverage_counts_the_scored_items_and_names_every_none():
    scores = Scores(
        headline={"score": 50.0, "partial": 1.0},
        breakdown={"score_x_a": 50.0, "score_x_b": None, "score_x_c": None, "group": None},
        insufficient={"score_x_c": "2 known answers of 4 in x_c"},
    )
    items = [{"scenario": "x_a"}, {"scenario": "x_a"}, {"scenario": "x_c"}]
    got = coverage(items, ["x_a", "x_b", "x_c"], 30, scores)
    assert got == {
        "documents": 3,
        "documents_total": 30,
        "scenarios": 2,
        "scenarios_total": 3,
        "scenarios_without_documents": ["x_b"],
        "insufficient": {
            "score_x_b": "no scored document in scenario x_b",
            "group": "undefined: the scenarios it averages have no scored document, or too few",
            "score_x_c": "2 known answers of 4 in x_c",
        },
    }


def test_documents_identity_is_order_free_and_counts_repeats():
    a = {"scenario": "x_a", DIGEST: "1" * 64}
    b = {"scenario": "x_b", DIGEST: "2" * 64}
    assert documents_identity([a, b]) == documents_identity([b, a])
    assert documents_identity([a, b])["documents"] == 2
    assert documents_identity([a, a])["documents_sha256"] != documents_identity([a])["documents_sha256"]


# -- settings actually used: --gen_kwargs, --num_fewshot, temperature=0 ------------------------------

STEREO = "stereotype_benign"


@pytest.fixture(scope="module")
def greedy_run(shared_data, trust_cache, tmp_path_factory):
    """A sampled dimension run with --gen_kwargs do_sample=false and --num_fewshot 5."""
    out = tmp_path_factory.mktemp("greedy") / "out"
    meta = {"scenarios": [STEREO], "docs_per_scenario": 3, "subsample_seed": 1}
    args = ["--model", "trust-scripted", "--tasks", "trust_stereotype", "--metadata", json.dumps(meta)]
    args += [
        "--gen_kwargs",
        "do_sample=false",
        "--num_fewshot",
        "5",
        "--log_samples",
        "--output_path",
        str(out),
    ]
    run_script(shared_data, trust_cache, "lm-eval-trust", *args)
    return read_results(out)


def test_do_sample_false_gives_one_answer_per_prompt_and_says_so(greedy_run):
    results, samples = greedy_run
    meta = results["configs"]["trust_stereotype"]["metadata"]
    assert [len(s["resps"][0]) for s in samples] == [1, 1, 1]
    assert "samples_per_prompt" not in meta
    assert meta["comparability"]["samples_per_prompt"] == {}
    assert meta["comparability"]["generation_kwargs"][STEREO]["do_sample"] is False
    assert results["n-shot"]["trust_stereotype"] == 0
    assert results["configs"]["trust_stereotype"]["num_fewshot"] == 0


def test_a_run_records_its_coverage_and_comparability(greedy_run):
    results, samples = greedy_run
    meta = results["configs"]["trust_stereotype"]["metadata"]
    assert meta["subsample"] == {"docs_per_scenario": 3, "subsample_seed": 1}
    cover = meta["coverage"]
    assert (cover["documents"], cover["scenarios"], cover["scenarios_total"]) == (3, 1, 1)
    assert cover["documents_total"] == 1152 and cover["insufficient"] == {}  # 16 topics x 24 groups x 3
    same = documents_identity([s["doc"] for s in samples])
    comp = meta["comparability"]
    assert {k: comp[k] for k in same} == same
    # Compared by the documents drawn (documents_sha256), not by the options that drew them.
    assert comp["scenarios_run"] == [STEREO] and "subsample" not in comp
    assert comp["data_source"] == "decodingtrust_stereotype_csv" and len(comp["data"]) == 64


def test_sampling_follows_the_settings_after_gen_kwargs(shared_data):
    task = load_task("trust_stereotype", {"scenarios": [STEREO], "n_samples": 2, "docs_per_scenario": 1})
    assert task.sampled() == {STEREO: 2}
    task.set_config(key="generation_kwargs", value={"do_sample": False}, update=True)
    assert task.sampled() == {} and task.n_samples_for(STEREO) == 1


def test_temperature_zero_on_a_sampled_scenario_is_refused(shared_data):
    task = load_task("trust_stereotype", {"scenarios": [STEREO], "docs_per_scenario": 1})
    task.set_config(key="generation_kwargs", value={"temperature": 0}, update=True)
    doc = task.test_docs()[0]
    with pytest.raises(TaskConfigError, match=rf"scenario {STEREO} samples .*temperature=0.*do_sample=false"):
        task.construct_requests(doc, "ctx", metadata=("trust_stereotype", 0, 1))
    task.set_config(key="generation_kwargs", value={"do_sample": False}, update=True)
    assert task.construct_requests(doc, "ctx", metadata=("trust_stereotype", 0, 1)).metadata[2] == 1


def test_a_group_over_a_dimension_without_a_score_has_no_score(shared_data, trust_cache, tmp_path):
    """One document per fairness setting leaves every setting under 3 known answers: fairness has no
    score, and the group's mean is None, not the mean of the rest (lm-eval's sum raised TypeError)."""
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "pair.yaml").write_text(
        "group: trust_pair\ntask: [trust_advglue, trust_fairness]\n"
        "aggregate_metric_list:\n  - metric: score\n    aggregation: mean\n    weight_by_size: false\n"
    )
    out = tmp_path / "out"
    meta = {"docs_per_scenario": 1, "scenarios": ["advglue_dev_sst2", "fairness_adult_zeroshot_br00"]}
    args = ["--model", "trust-scripted", "--tasks", "trust_pair", "--include_path", str(tmp_path / "tasks")]
    proc = run_script(
        shared_data,
        trust_cache,
        "lm-eval-trust",
        *args,
        "--metadata",
        json.dumps(meta),
        "--output_path",
        str(out),
    )
    results, _ = read_results(out)
    assert results["results"]["trust_fairness"]["score,none"] is None
    assert isinstance(results["results"]["trust_advglue"]["score,none"], float)
    assert results["results"]["trust_pair"]["score,none"] is None
    assert "trust_pair" in proc.stdout
