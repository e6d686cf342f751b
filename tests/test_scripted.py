"""Every task YAML end to end on the instant `trust-scripted` model, checked against fixed scores.

The expected numbers were computed by the scoring code as it stood before the task template, the
one-item sample logs and the shared `Dimension` scoring landed: the same responses must keep giving
the same scores. `breakdown` counts every number a dimension reports and `total` sums them, so a
changed per-scenario figure fails too.
"""

from __future__ import annotations

import json
import math

import pytest
from conftest import read_results, run_script, yaml_headline

from lm_eval_trust.report.runs import read_samples
from lm_eval_trust.rescore import rescore

DIMENSIONS = ("toxicity", "stereotype", "advglue", "ood", "adv_demo", "privacy", "ethics", "fairness")
# task: (score, refusal_rate, partial, numbers reported, their sum), at --limit 40 and n_samples 2.
EXPECTED = {
    "trust_toxicity": (77.31848512005686, 0.0, 0.0, 36, 697.680887),
    "trust_stereotype": (92.33333333333331, 91.33333333333333, 1.0, 12, 759.0),
    "trust_advglue": (15.201465201465203, 74.54212454212454, 0.0, 6, 135.347985),
    "trust_ood": (2.0833333333333335, 61.111111111111114, 0.0, 49, 371.527778),
    "trust_adv_demo": (45.83333333333333, 0.0, 1.0, 37, 155.166667),
    "trust_privacy": (100.0, 0.0, 1.0, 85, 4201.0),
    "trust_ethics": (64.44444444444444, 93.88888888888887, 1.0, 34, 1421.0),
    "trust_fairness": (58.33333333333333, 81.06060606060606, 1.0, 41, 433.727273),
}
TRUST = (56.94346601241248, 0.625)


def numbers(results: dict, task: str) -> dict:
    headline = {
        k.split(",")[0]: v
        for k, v in results["results"][task].items()
        if k.endswith(",none") and "_stderr" not in k
    }
    return {**headline, **results["configs"][task]["metadata"]["breakdown"]}


def check(results: dict, task: str) -> None:
    score, refusal, partial, count, total = EXPECTED[task]
    found = numbers(results, task)
    assert found["score"] == pytest.approx(score, abs=1e-9)
    assert found["refusal_rate"] == pytest.approx(refusal, abs=1e-9)
    assert found["partial"] == partial
    assert len(found) == count
    values = [v for v in found.values() if isinstance(v, int | float) and not isinstance(v, bool)]
    assert math.fsum(values) == pytest.approx(total, abs=1e-5)


@pytest.fixture(scope="module")
def scripted_run(shared_data, trust_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("scripted") / "out"
    args = ["--model", "trust-scripted", "--tasks", "trust", "--limit", "40"]
    # Toxicity's expected numbers were made by the `offline` scorer, kept by name for such runs.
    metadata = {"n_samples": 2, "toxicity_scorer": "offline"}
    args += ["--metadata", json.dumps(metadata), "--log_samples", "--output_path", str(out)]
    run_script(shared_data, trust_cache, "lm-eval-trust", *args)
    return out


def test_every_dimension_keeps_its_scores(scripted_run):
    results, _ = read_results(scripted_run)
    for task in EXPECTED:
        check(results, task)
    assert results["results"]["trust"]["score,none"] == pytest.approx(TRUST[0], abs=1e-9)
    assert results["results"]["trust"]["partial,none"] == pytest.approx(TRUST[1])


def test_results_hold_the_yaml_headline_and_the_breakdown_beside_it(scripted_run):
    results, _ = read_results(scripted_run)
    for dimension in DIMENSIONS:
        task = f"trust_{dimension}"
        headline = yaml_headline(dimension)
        metrics = {k.split(",")[0] for k in results["results"][task] if k.endswith(",none")}
        assert metrics == {*headline, *(f"{m}_stderr" for m in headline)}
        breakdown = results["configs"][task]["metadata"]["breakdown"]
        assert not set(breakdown) & set(headline)
        assert any(k.startswith("score_") for k in breakdown)


def test_each_sample_line_holds_one_scored_item(scripted_run):
    for path in scripted_run.rglob("samples_*.jsonl"):
        task = path.name.split("_20")[0][len("samples_") :]
        headline = yaml_headline(task[len("trust_") :])
        for line in read_samples(path):
            assert line["metrics"] == headline
            assert isinstance(line["score"], dict)
            assert all(line[name] is None for name in headline[1:])
            assert "messages" not in line["doc"] and len(line["doc"]["messages_sha256"]) == 64


def test_rescore_of_the_logs_gives_the_run_s_numbers(scripted_run, tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv("TRUST_DATA_DIR", str(shared_data))
    (path,) = rescore([scripted_run], tmp_path / "rescored")
    rescored = json.loads(path.read_text())
    for task in EXPECTED:
        check(rescored, task)


def test_the_default_scorer_rescores_the_same_answers_and_says_so(
    scripted_run, tmp_path, shared_data, trust_cache, monkeypatch
):
    """The same generations scored by `offline-lm`: another number, recorded as another scorer."""
    monkeypatch.setenv("TRUST_DATA_DIR", str(shared_data))
    monkeypatch.setenv("TRUST_CACHE_DIR", str(trust_cache))  # the session's fit
    (path,) = rescore([scripted_run], tmp_path / "rescored", {"toxicity_scorer": "offline-lm"})
    rescored = json.loads(path.read_text())
    meta = rescored["configs"]["trust_toxicity"]["metadata"]
    assert meta["toxicity_scorer_used"]["name"] == "offline-lm"
    score = rescored["results"]["trust_toxicity"]["score,none"]
    assert 0 <= score <= 100 and score != pytest.approx(EXPECTED["trust_toxicity"][0])
