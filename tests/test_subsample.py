"""`--metadata docs_per_scenario` / `subsample_seed`: a seeded stratified draw, the same for every run."""

import json
import re

import pytest
from test_bad_input_data import load_task

from lm_eval_trust.dimension import TaskConfigError
from lm_eval_trust.subsample import draw, k_for, run_documents, settings


def _docs(counts):
    return [{"scenario": s, "i": i} for s, n in counts.items() for i in range(n)]


def _picked(docs, scenario):
    return [d["i"] for d in docs if d["scenario"] == scenario]


def test_draws_k_of_every_scenario_and_all_of_a_smaller_one_in_data_order():
    docs = draw(_docs({"a": 10, "b": 2, "c": 5}), 3, 0)
    assert [len(_picked(docs, s)) for s in "abc"] == [3, 2, 3]
    assert _picked(docs, "b") == [0, 1]
    for s in "ac":
        assert _picked(docs, s) == sorted(_picked(docs, s))


def test_a_scenario_s_draw_depends_on_the_seed_and_its_name_only():
    alone = draw(_docs({"a": 50}), 5, 7)
    with_others = draw(_docs({"z": 9, "a": 50, "b": 30}), 5, 7)
    assert _picked(alone, "a") == _picked(with_others, "a")
    assert _picked(draw(_docs({"a": 50}), 5, 7), "a") == _picked(alone, "a")
    assert _picked(draw(_docs({"a": 50}), 5, 8), "a") != _picked(alone, "a")
    # Same size, another name: another draw (not the same positions in every scenario).
    renamed = draw([{**d, "scenario": "b"} for d in _docs({"a": 50})], 5, 7)
    assert _picked(renamed, "b") != _picked(alone, "a")


def test_the_draw_is_fixed_across_interpreters():
    """Digest-ranked, so this list is what every Python, platform and run gives."""
    assert _picked(draw(_docs({"toxicity_x": 20}), 4, 0), "toxicity_x") == FIXED_DRAW


FIXED_DRAW = [3, 5, 6, 8]  # sorted(range(20), key=sha256(b"[0, \"toxicity_x\", p]"))[:4], in order


def test_run_documents_interleaves_the_draw():
    docs, chosen = run_documents(_docs({"a": 6, "b": 6}), ["a", "b"], {"docs_per_scenario": 2}, "t", "")
    assert chosen == {"docs_per_scenario": 2, "subsample_seed": 0}
    assert [d["scenario"] for d in docs] == ["a", "b", "a", "b"]
    full, none = run_documents(_docs({"a": 2, "b": 1}), ["a", "b"], {}, "t", "")
    assert none is None and [d["scenario"] for d in full] == ["a", "b", "a"]


def test_a_dict_sets_k_per_scenario_exact_name_first_and_runs_the_rest_in_full():
    k = {"f_*": 4, "f_b": 1}
    assert [k_for(k, s) for s in ("f_a", "f_b", "g")] == [4, 1, None]
    docs = draw(_docs({"f_a": 9, "f_b": 9, "g": 6}), k, 0)
    assert [len(_picked(docs, s)) for s in ("f_a", "f_b", "g")] == [4, 1, 6]
    assert _picked(docs, "f_a") == _picked(draw(_docs({"f_a": 9}), 4, 0), "f_a")
    assert settings({"docs_per_scenario": k}, "t") == {"docs_per_scenario": k, "subsample_seed": 0}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"docs_per_scenario": 0}, r"--metadata docs_per_scenario must be a positive integer.*got 0"),
        ({"docs_per_scenario": "5"}, r"docs_per_scenario must be a positive integer.*got '5'"),
        ({"docs_per_scenario": True}, r"docs_per_scenario must be a positive integer.*got True"),
        ({"docs_per_scenario": 2.5}, r"docs_per_scenario must be a positive integer.*got 2.5"),
        ({"docs_per_scenario": {}}, r"docs_per_scenario must be .*non-empty.*got \{\}"),
        ({"docs_per_scenario": {"f_*": 0}}, r"docs_per_scenario must be .*got \{'f_\*': 0\}"),
        ({"docs_per_scenario": 3, "subsample_seed": "x"}, r"subsample_seed must be an integer.*'x'"),
        ({"subsample_seed": 3}, r"subsample_seed is set but docs_per_scenario is not"),
    ],
)
def test_bad_settings_name_the_option(options, message):
    with pytest.raises(TaskConfigError, match=message):
        settings(options, "trust_x")


def test_a_task_runs_the_draw_and_records_it(shared_data):
    meta = {"docs_per_scenario": 3, "subsample_seed": 5, "scenarios": ["advglue_dev_sst2", "advglue_dev_qqp"]}
    task = load_task("trust_advglue", meta)
    docs = list(task.test_docs())
    assert [d["scenario"] for d in docs] == ["advglue_dev_sst2", "advglue_dev_qqp"] * 3
    assert task.config.metadata["subsample"] == {"docs_per_scenario": 3, "subsample_seed": 5}
    alone = load_task("trust_advglue", {**meta, "scenarios": ["advglue_dev_qqp"]})
    digests = [d["messages_sha256"] for d in docs if d["scenario"] == "advglue_dev_qqp"]
    assert [d["messages_sha256"] for d in alone.test_docs()] == digests
    full = load_task("trust_advglue", {"scenarios": ["advglue_dev_sst2"]})
    assert "subsample" not in full.config.metadata


def test_a_bad_value_stops_the_task_before_any_model_work(shared_data):
    with pytest.raises(TaskConfigError, match="trust_advglue: --metadata docs_per_scenario"):
        load_task("trust_advglue", {"docs_per_scenario": -1})


# -- overlapping and unmatched patterns (the most specific entry wins; nothing silent) -------------


def test_the_most_specific_pattern_wins_whatever_the_order():
    """`{"*": 2, "fairness_*": 3}` gave fairness 2 when the first match won."""
    for k in ({"*": 2, "fairness_*": 3}, {"fairness_*": 3, "*": 2}):
        assert [k_for(k, s) for s in ("fairness_a", "advglue_b")] == [3, 2]
    assert k_for({"fairness_*": 3, "fairness_adult_*": 5, "*": 1}, "fairness_adult_x") == 5


def test_equally_specific_patterns_with_different_counts_are_refused():
    with pytest.raises(TaskConfigError, match=r"\['f_\*', '\*_a'\] both match scenario 'f_a'.*neither"):
        k_for({"f_*": 2, "*_a": 3}, "f_a")
    assert k_for({"f_*": 2, "*_a": 2}, "f_a") == 2  # the same count: no ambiguity


def test_what_each_scenario_got_is_recorded():
    k = {"*": 1, "f_*": 2}
    docs, chosen = run_documents(
        _docs({"f_a": 6, "f_b": 6, "g": 3}), ["f_a", "f_b", "g"], {"docs_per_scenario": k}, "t", "f_"
    )
    assert chosen["applied"] == {"f_a": 2, "f_b": 2, "g": 1}
    assert [len(_picked(docs, s)) for s in ("f_a", "f_b", "g")] == [2, 2, 1]


@pytest.mark.parametrize("pattern", ["f_c*", "f_typo", "f_[xy]*"])
def test_a_pattern_aimed_at_the_dimension_that_matches_no_scenario_run_is_refused(pattern):
    with pytest.raises(
        TaskConfigError, match=re.escape(f"t: --metadata docs_per_scenario entries ['{pattern}'] match none")
    ):
        run_documents(
            _docs({"f_a": 4, "f_b": 4}), ["f_a", "f_b"], {"docs_per_scenario": {pattern: 2}}, "t", "f_"
        )


def test_a_task_that_no_entry_addresses_runs_in_full_and_records_no_subsample():
    docs, chosen = run_documents(_docs({"f_a": 4}), ["f_a"], {"docs_per_scenario": {"g_*": 1}}, "t", "f_")
    assert chosen is None and len(docs) == 4


def test_patterns_aimed_at_other_dimensions_are_left_to_them():
    docs, chosen = run_documents(
        _docs({"f_a": 4}), ["f_a"], {"docs_per_scenario": {"g_*": 1, "*": 3}}, "t", "f_"
    )
    assert chosen["applied"] == {"f_a": 3} and len(docs) == 3


@pytest.mark.parametrize("pattern", ["advglu_*", "*_fewshot9*", "[", "fairness_*"])
def test_a_pattern_no_dimension_can_match_is_refused_before_the_model_loads(run_cli, tmp_path, pattern):
    """`advglu_*` ran the full set and recorded a subsample that never happened (as `fairness_*`
    would in a run of AdvGLUE alone)."""
    proc = run_cli(
        "lm-eval-trust",
        *("--model", "trust-scripted", "--tasks", "trust_advglue"),
        *("--metadata", json.dumps({"docs_per_scenario": {pattern: 2, "*": 3}})),
        *("--output_path", str(tmp_path / "out")),
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"[{pattern!r}] can match no scenario" in proc.stderr and "advglue_" in proc.stderr
    assert not (tmp_path / "out").exists()
