"""AdvGLUE++ prompts, parser and score on hand-written cases."""

import json

import pytest
from conftest import task_config

from lm_eval_trust.data import DataError
from lm_eval_trust.tasks.advglue import advglue


@pytest.fixture(scope="module")
def prompts():
    return task_config("advglue")["metadata"]


@pytest.mark.parametrize(
    "response, task, expected",
    [
        ("positive", "sst2", 1),
        ("Negative.", "sst2", 0),
        ("The sentiment is negative. Not positive at all.", "sst2", 0),
        ("positive or negative", "sst2", -1),
        ('The answer is "positive" but really negative', "sst2", 0),
        ("I cannot tell.", "sst2", -1),
        ("yes", "qqp", 1),
        ("no", "qqp", 0),
        ("maybe", "mnli", 1),
        ("Yes", "mnli", 0),
        ("Yes, it does not follow.", "mnli", -1),
        ("I cannot determine that", "mnli", 2),
        ("no", "rte", 1),
        ("yes", "qnli", 0),
        ("", "sst2", -1),
    ],
)
def test_parse_label_follows_response_to_labels(response, task, expected):
    assert advglue.parse_label(response, task) == expected


def test_format_input_two_keys_and_rte_renaming():
    assert (
        advglue.format_input("qqp", {"question1": "A?", "question2": "B?"}) == "question1: A?\nquestion2: B?"
    )
    rte = advglue.format_input("rte", {"sentence1": "P.", "sentence2": "H."})
    assert rte == "premise: P.\nHypothesis: H."
    assert advglue.format_input("sst2", {"sentence": "x", "method": "SemAttack"}) == "x"


def test_messages_have_demonstrations_as_turns_and_no_system(prompts):
    messages = advglue.build_messages("sst2", "sentence: fine film", prompts)
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    instruction = prompts["instructions"]["sst2"]
    assert messages[0]["content"] == f"{instruction}\nsentence: I'm very happy today!!"
    assert messages[1]["content"] == "positive"
    assert messages[-1]["content"] == f"{instruction}\nsentence: fine film"


def test_rte_demonstrations_use_the_mnli_instruction(prompts):
    messages = advglue.build_messages("rte", "premise: a\nHypothesis: b", prompts)
    assert messages[0]["content"].startswith(prompts["instructions"]["mnli"])
    assert messages[-1]["content"].startswith(prompts["instructions"]["rte"])
    assert len(messages) == 5


def test_aggregate_is_unweighted_mean_over_cells():
    items = [
        {"scenario": "a", "pred": 1, "label": 1},
        {"scenario": "a", "pred": -1, "label": 1},
        {"scenario": "a", "pred": 0, "label": 1},
        {"scenario": "a", "pred": 1, "label": 1},
        {"scenario": "b", "pred": 0, "label": 0},
    ]
    result = advglue.aggregate(items, ["a", "b", "c"])
    assert result["score_a"] == pytest.approx(50.0)
    assert result["score_b"] == pytest.approx(100.0)
    assert result["score_c"] is None
    assert result["score"] == pytest.approx(75.0)
    assert result["refusal_rate"] == pytest.approx(100 * (0.25 + 0.0) / 2)
    assert result["partial"] == 1.0
    assert advglue.aggregate(items, ["a", "b"])["partial"] == 0.0


def test_aggregate_with_no_items_reports_missing_not_zero():
    result = advglue.aggregate([], ["a"])
    assert result["score"] is None and result["score_a"] is None


class _Root:
    """A DataRoot stand-in serving a fixed set of files."""

    def __init__(self, files):
        self.files = files

    def try_get(self, rel):
        return (self.files[rel], None) if rel in self.files else (None, f"{rel} missing")


def _write(path, obj):
    path.write_text(json.dumps(obj))
    return path


RECORDS = {
    "sst2": [{"sentence": "good", "label": 1}, {"sentence": "bad", "label": 0}],
    "qqp": [{"question1": "a", "question2": "b", "label": 0}],
    "mnli": [{"premise": "p", "hypothesis": "h", "label": 2}],
    "rte": [{"sentence1": "p", "sentence2": "h", "label": 1}],
}


def test_load_uses_advglue_plus_plus_when_all_three_sources_exist(tmp_path, prompts):
    files = {advglue.PP_DIR + name: _write(tmp_path / name, RECORDS) for name in advglue.PP_SOURCES.values()}
    loaded = advglue.load(_Root(files), prompts)
    assert loaded.info["data_source"] == "advglue_plus_plus"
    assert "advglue_pp_stable_vicuna_sst2" in loaded.default_scenarios
    assert "advglue_pp_alpaca_rte" in loaded.scenarios
    assert "advglue_pp_alpaca_rte" not in loaded.default_scenarios
    assert len(loaded.default_scenarios) == 9
    assert len(loaded.docs) == 3 * 5


def test_load_falls_back_to_advglue_dev_with_a_warning(tmp_path, prompts):
    files = {
        advglue.PP_DIR + "alpaca.json": _write(tmp_path / "alpaca.json", RECORDS),
        advglue.DEV_FILE: _write(tmp_path / "dev.json", RECORDS),
    }
    loaded = advglue.load(_Root(files), prompts)
    assert loaded.info["data_source"] == "advglue_dev_fallback"
    assert loaded.info["comparable_to_paper"] is False
    assert "NOT comparable" in loaded.info["warnings"][0]
    assert "vicuna.json" in loaded.info["warnings"][0]
    assert loaded.default_scenarios == ["advglue_dev_sst2", "advglue_dev_qqp", "advglue_dev_mnli"]
    assert loaded.docs[0]["target"] == "positive"


def test_load_without_any_data_names_both_files():
    with pytest.raises(DataError, match="AdvGLUE dev: advglue/dev.json missing"):
        advglue.load(_Root({}), {})


def test_load_rejects_malformed_json(tmp_path, prompts):
    bad = tmp_path / "dev.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        advglue.load(_Root({advglue.DEV_FILE: bad}), prompts)
