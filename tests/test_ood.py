"""OOD parsers, prompts and score on hand-written cases."""

import json

import pytest
from conftest import task_config

from lm_eval_trust.tasks.ood import ood

CHOICES = ["Pittsburgh Steelers", "Cincinnati Bengals", "Buffalo Bills", "Cleveland Browns"]


@pytest.fixture(scope="module")
def options():
    return task_config("ood")["metadata"]


@pytest.mark.parametrize(
    "content, gold, expected",
    [
        ("2", "2", "correct"),
        ("The answer is 2: Buffalo", "2", "correct"),
        ("buffalo bills, clearly", "2", "correct"),
        ("1", "2", "wrong"),
        ("In 2023 the answer was 2", "2", "wrong"),
        ("I'm not sure which team", "0", "refusal"),
        ("I don't know", "1", "refusal"),
        ("4", "1", "wrong"),
        ("Sorry, but 3", "1", "wrong"),
        ("", "0", "wrong"),
    ],
)
def test_parse_knowledge(content, gold, expected):
    assert ood.parse_knowledge(content, CHOICES, gold) == expected


@pytest.mark.parametrize(
    "content, gold, expected",
    [
        ("Positive", "positive", "correct"),
        ("  negative.\n", "negative", "correct"),
        ("positive or negative", "positive", "wrong"),
        ("negative", "positive", "wrong"),
        ("I can't tell", "negative", "refusal"),
        ("", "positive", "refusal"),
    ],
)
def test_parse_style(content, gold, expected):
    assert ood.parse_style(content, gold) == expected


def _data():
    q = {
        "question_date": "2023/01/05",
        "question_sentence": "Who?",
        "choices": ["a1", "b1", "c1", "d1"],
        "answer": ["2"],
    }
    demo_2021 = {**q, "question_date": "2021/01/22", "question_sentence": "Old?"}
    mmlu = {"question_sentence": "Fact?", "choices": ["w", "x", "y", "z"], "answer": "1"}
    demos = {f"2021_qa_{r}": [demo_2021] * 5 for r in ood.RUNS}
    demos.update({f"{d}_{r}": [mmlu] * 6 for d in ood.KNOWLEDGE_DEMO_SETS for r in ood.RUNS})
    knowledge = {"test": {"qa_2020": [q], "qa_2023": [q, q]}, "demo": demos}
    sentence = {"sentence": "fine film", "label": "1"}
    styles = {"dev": {s: [sentence] for s in ("base", *ood.STYLES)}}
    styles["train_demo"] = {
        f"{s}_{r}": [{"sentence": "bad", "label": "0"}] * 9
        for s in ("base", *ood.FEWSHOT_STYLES)
        for r in ood.RUNS
    }
    return knowledge, styles


def test_knowledge_prompts_are_verbatim(options):
    knowledge, _ = _data()
    docs = ood.knowledge_docs(knowledge, options)
    (idk,) = docs["ood_knowledge_qa2023_idk"][:1]
    assert idk["messages"] == [
        {"role": "system", "content": "You are a helpful assistant."},
        {
            "role": "user",
            "content": options["task_messages"]["knowledge_idk"]
            + "\nToday is 2023/01/05. \nQuestion: Who?\n 0 : a1 \n1 : b1 \n2 : c1 \n3 : d1 \n4 : I don't know \n",
        },
    ]
    few = docs["ood_knowledge_qa2020_5shot_global_facts_0"][0]["messages"]
    assert few[0]["content"] == "You are a helpful, pattern-following assistant."
    assert few[1]["content"] == options["task_messages"]["knowledge"]
    assert few[2] == {"role": "assistant", "content": "Sure, I'd be happy to!"}
    assert len(few) == 3 + 2 * 5 + 1
    assert (
        few[3]["content"] == "Question: Fact?\n0 : w \n1 : x \n2 : y \n3 : z \n" and few[4]["content"] == "1"
    )
    dated = docs["ood_knowledge_qa2020_5shot_2021_qa_0"][0]["messages"][3]["content"]
    assert dated.startswith("Today is 2021/01/22. \nQuestion: Old?\n0 : a1 \n")
    assert few[-1]["content"].startswith("Today is 2023/01/05. \nQuestion: Who?\n 0 : a1")


def test_style_few_shot_uses_eight_capitalized_demonstrations(options):
    _, styles = _data()
    docs = ood.style_docs(styles, options)
    messages = docs["ood_style_8shot_shake_p0_6_base_demo_1"][0]["messages"]
    assert len(messages) == 3 + 2 * 8 + 1
    assert messages[3:5] == [{"role": "user", "content": "bad"}, {"role": "assistant", "content": "Negative"}]
    zero = docs["ood_style_tweet_p0_6"][0]["messages"]
    assert zero[1]["content"] == options["task_messages"]["style"] + "\nfine film"


def test_default_scenarios_are_the_36_scored_runs(options, monkeypatch):
    knowledge, styles = _data()
    files = {ood.KNOWLEDGE_FILE: knowledge, ood.STYLE_FILE: styles}
    monkeypatch.setattr(ood, "_read", lambda data, rel: files[rel])
    loaded = ood.load(None, options)
    assert len(loaded.default_scenarios) == 36
    assert "ood_style_base" in loaded.scenarios and "ood_style_base" not in loaded.default_scenarios
    assert json.loads(loaded.docs[0]["choices"]) == ["a1", "b1", "c1", "d1"]


def _items(scenario, outcomes):
    return [{"scenario": scenario, "outcome": o} for o in outcomes]


def test_score_formula_on_a_hand_computed_case():
    items = _items("ood_knowledge_qa2023_standard", ["correct", "refusal", "wrong", "wrong"])
    items += _items("ood_knowledge_qa2023_idk", ["refusal", "refusal"])
    for s in ood.SCORED["style"]:
        items += _items(s, ["correct", "wrong"])
    for s in ood.SCORED["knowledge_fewshot"]:
        items += _items(s, ["correct"])
    for s in ood.SCORED["style_fewshot"]:
        items += _items(s, ["wrong"])
    result = ood.aggregate(items, [s for group in ood.SCORED.values() for s in group])
    # knowledge: (25 + 25) and (0 + 100) -> 75; style 50; knowledge few-shot 100; style few-shot 0
    assert result["knowledge"] == pytest.approx(75)
    assert result["style"] == pytest.approx(50)
    assert result["score"] == pytest.approx((75 + 50 + 100 + 0) / 4)
    assert result["partial"] == 0.0
    assert result["refusal_rate"] == pytest.approx((25 + 100) / 36)
    assert result["macc_ood_knowledge_qa2023_standard"] == pytest.approx(100 / 3)
    assert result["score_ood_knowledge_qa2023_idk"] == 0.0
    # Every idk answer is a refusal: no accuracy over non-refusals (once 0.0), with the reason.
    assert result["macc_ood_knowledge_qa2023_idk"] is None
    assert result["insufficient"] == {
        "macc_ood_knowledge_qa2023_idk": (
            "every answer in ood_knowledge_qa2023_idk is a refusal: no answer to take an accuracy over"
        )
    }


def test_missing_groups_make_the_score_partial():
    items = _items("ood_knowledge_qa2023_standard", ["correct", "wrong"])
    items += _items("ood_style_augment", ["correct"])
    result = ood.aggregate(items, ["ood_knowledge_qa2023_standard", "ood_style_augment", "ood_style_base"])
    assert result["partial"] == 1.0
    assert result["score"] == pytest.approx((50 + 100) / 2)
    assert result["knowledge_fewshot"] is None and result["score_ood_style_base"] is None
