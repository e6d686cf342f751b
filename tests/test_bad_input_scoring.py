"""Bad model output at scoring time: empty, whitespace, special tokens only, non-UTF-8, very long.

Covered elsewhere: an empty generation counts as toxicity 0 and a failed score is left out
(test_toxicity.py::test_score_item_max_with_empty_as_zero_and_failures_left_out); Perspective
returning 429/5xx (test_scoring.py::test_retries_rate_limit_and_server_errors,
test_scoring.py::test_persistent_failure_is_reported_never_zero), 4xx
(test_scoring.py::test_client_errors_are_not_retried), a timeout or malformed JSON
(test_scoring.py::test_timeouts_and_malformed_replies_are_retried), a missing API key
(test_scoring.py::test_missing_key_is_a_clear_error).
"""

import importlib
import json
import logging
import math
import time
from types import SimpleNamespace

import pytest
from conftest import task_config
from test_bad_input_data import load_task
from test_scoring import fake_server, scorer  # noqa: F401  (fixtures: the fake Perspective server)

from lm_eval_trust.data import DataRoot
from lm_eval_trust.scoring import toxicity
from lm_eval_trust.task import KeepSamples

DIMENSIONS = ["advglue", "ood", "adv_demo", "ethics", "fairness", "stereotype", "privacy"]
REPLACEMENT = "\ufffd\ufffd the answer is \ufffd"  # what a tokenizer decodes invalid UTF-8 bytes to
LONG = {"words": "yes no maybe positive negative " * 40000, "letters": "a" * 200_000, "marks": "@." * 100_000}


@pytest.fixture(scope="module")
def first_docs(shared_data):
    """One real document per scenario of every dimension (toxicity's scoring is batch-level, below)."""
    data = DataRoot(shared_data)
    docs = {}
    for dimension in DIMENSIONS:
        options = task_config(dimension)["metadata"]
        module = importlib.import_module(options["dimension"])
        by_scenario = {}
        for doc in module.load(data, options).docs:
            by_scenario.setdefault(doc["scenario"], doc)
        docs[dimension] = (module, by_scenario)
    return docs


def _score(first_docs, dimension, generation):
    module, by_scenario = first_docs[dimension]
    items = [module.score_item(doc, [generation]) for doc in by_scenario.values()]
    json.dumps(items, ensure_ascii=False).encode("utf-8")  # lm-eval logs every item
    return module.aggregate(items, list(by_scenario))


def _special_only_decoded(tiny_model) -> str:
    """lm-eval's HFLM.tok_decode of a generation made only of special tokens."""
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    ids = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|im_start|>", "<s>", "<|im_end|>"])
    return HFLM.tok_decode(SimpleNamespace(tokenizer=tokenizer), ids)


@pytest.mark.parametrize("dimension", DIMENSIONS)
def test_empty_whitespace_and_special_only_output_score_alike(first_docs, dimension, tiny_model):
    special_only = _special_only_decoded(tiny_model)
    assert special_only == ""
    empty = _score(first_docs, dimension, "")
    assert _score(first_docs, dimension, "  \n\t ") == empty
    assert _score(first_docs, dimension, special_only) == empty
    assert empty["score"] is None or 0 <= empty["score"] <= 100


@pytest.mark.parametrize("dimension", DIMENSIONS)
def test_non_utf8_and_very_long_output_is_scored_quickly(first_docs, dimension):
    for generation in [REPLACEMENT, *LONG.values()]:
        start = time.monotonic()
        result = _score(first_docs, dimension, generation)
        assert time.monotonic() - start < 5, "no parser may backtrack on long output"
        assert result["score"] is None or (math.isfinite(result["score"]) and 0 <= result["score"] <= 100)


def test_perspective_scores_replacement_characters_surrogates_and_long_text(scorer, fake_server):  # noqa: F811
    texts = [REPLACEMENT, "lone \udcff surrogate", LONG["words"]]
    assert scorer.score(texts) == [0.25, 0.25, 0.25]
    sent = [text for _, text, _ in fake_server.requests]
    assert sent[0] == REPLACEMENT and sent[2] == LONG["words"]
    assert scorer.score(texts) == [0.25, 0.25, 0.25] and len(fake_server.requests) == 3, "all cached"


def test_keep_samples_keeps_every_sample():
    resps = KeepSamples().apply([("", "  \n"), ("an answer", "")], [{}, {}])
    assert resps == [["", "  \n"], ["an answer", ""]]


def test_a_mostly_empty_run_is_flagged_in_the_results(caplog):
    task = load_task("trust_advglue", {"scenarios": ["advglue_dev_sst2"]})
    doc = task.test_docs()[0]
    with caplog.at_level(logging.WARNING):
        task._count_empty([[""], [""], ["  "], ["an answer"]])
    items = [task.process_results(doc, [[""]])["score"] for _ in range(4)]
    assert task.scores(items).headline["score"] == 0
    assert task.config.metadata["empty_generations"] == {"generations": 4, "empty": 3}
    assert "3 of 4 generations are empty" in caplog.text


@pytest.mark.parametrize("qps", [0, -1, "fast", "nan", None])
def test_a_perspective_rate_that_is_not_a_positive_number_is_refused(qps, monkeypatch):
    monkeypatch.setenv("PERSPECTIVE_API_KEY", "k")
    with pytest.raises(toxicity.ScorerError, match=rf"perspective_qps {qps!r} is not a positive number"):
        toxicity.get_scorer("perspective", {"perspective_qps": qps}, None)


# -- runs scored differently are not compared --------------------------------------------------------

TOXICITY = "lm_eval_trust.tasks.toxicity.toxicity"
FAIRNESS = "lm_eval_trust.tasks.fairness.fairness"


@pytest.mark.parametrize(
    ("dense", "compressed", "shown"),
    [
        (
            {"dimension": TOXICITY, "toxicity_scorer_used": {"name": "offline-lm", "version": "stack/fit-2"}},
            {"dimension": TOXICITY, "toxicity_scorer_used": {"name": "offline", "version": "ridge/fit-1"}},
            [
                '"name": "offline"',
                '"version": "ridge/fit-1"',
                '"name": "offline-lm"',
                '"version": "stack/fit-2"',
            ],
        ),
        (
            {"dimension": TOXICITY, "toxicity_scorer_used": {"name": "offline-lm", "version": "stack/fit-2"}},
            {"dimension": TOXICITY, "toxicity_scorer_used": {"name": "offline-lm", "version": "stack/fit-3"}},
            ["stack/fit-3", "stack/fit-2"],
        ),
        (
            {"dimension": FAIRNESS, "fairness_scoring": "fork"},
            {"dimension": FAIRNESS, "fairness_scoring": "fork_compat"},
            ['"fairness_scoring": "fork_compat"', '"fairness_scoring": "fork"'],
        ),
    ],
)
def test_runs_scored_under_different_scorers_or_formulas_are_refused_naming_both(
    tmp_path, dense, compressed, shown
):
    """Recorded results only (no sample logs): the report reads the options from each run's metadata,
    so runs written before this check are held to it too."""
    from report_fixtures import advglue_config, compression, trust_results, write_run

    from lm_eval_trust.report import ReportError, write_report

    for folder, compress, metadata in (
        ("dense", None, dense),
        ("gptq", compression("gptq", bits=4, group_size=128), compressed),
    ):
        write_run(
            tmp_path / folder,
            "tiny",
            compress,
            {"trust_advglue": trust_results("trust_advglue", 50.0)},
            {"trust_advglue": advglue_config(**metadata)},
        )
    with pytest.raises(ReportError, match="not comparable") as err:
        write_report([tmp_path], tmp_path / "out")
    message = str(err.value)
    assert "trust_advglue: scoring is" in message and all(part in message for part in shown)
    assert "--metadata toxicity_scorer" in message and "rescore" in message
