"""`lm-eval-trust plan`: counts against a hand count, worst-case bounds by hand and above every
estimate, and the predicted half-widths against the bootstrap of the run it planned."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import cli_env, read_results, run_script
from test_bad_input_data import load_task

from lm_eval_trust import stats
from lm_eval_trust.model_adapters.scripted import ANSWERS
from lm_eval_trust.plan import plan_main

DIMENSIONS = ("toxicity", "stereotype", "advglue", "ood", "adv_demo", "privacy", "ethics", "fairness")
ADVGLUE_AND_STEREOTYPE = ("--tasks", "trust_advglue,trust_stereotype", "--limit", "30")
ADVGLUE_SIZES = {"sst2": 148, "qqp": 78, "mnli": 121}  # documents per scenario in the mirror's dev set


@pytest.fixture
def plan_env(shared_data, trust_cache, monkeypatch):
    for key, value in cli_env(shared_data, trust_cache).items():
        monkeypatch.setenv(key, value)


def run_plan(tmp_path, *args: str) -> dict:
    out = tmp_path / "plan.json"
    assert plan_main([*args, "--json", str(out)]) == 0
    return json.loads(out.read_text())


def per_scenario(k: int, seed: int) -> list[str]:
    """Arguments giving k documents of every scenario, drawn with `seed`."""
    return ["--metadata", json.dumps({"docs_per_scenario": k, "subsample_seed": seed})]


def scripted(shared_data, trust_cache, out, design: list[str], tasks: str, answers=None) -> dict:
    args = [
        "--model",
        "trust-scripted",
        "--tasks",
        tasks,
        *design,
        "--log_samples",
        "--output_path",
        str(out),
    ]
    if answers:
        args += ["--model_args", f"answers={answers}"]
    run_script(shared_data, trust_cache, "lm-eval-trust", *args)
    return read_results(out)


@pytest.fixture(scope="module")
def other_answers(tmp_path_factory):
    path = tmp_path_factory.mktemp("answers") / "answers.json"
    path.write_text(json.dumps([*ANSWERS[::2], "I agree.", "yes"]))
    return path


def test_counts_match_a_hand_count(plan_env, tiny_model, tmp_path):
    from transformers import AutoTokenizer

    figures = run_plan(
        tmp_path,
        *ADVGLUE_AND_STEREOTYPE,
        "--metadata",
        '{"n_samples": 3}',
        "--tokenizer",
        str(tiny_model),
    )
    advglue, stereotype = figures["dimensions"]["trust_advglue"], figures["dimensions"]["trust_stereotype"]
    # 30 interleaved documents over 3 scenarios; greedy, max_gen_toks 16.
    assert {s: d["documents"] for s, d in advglue["scenarios"].items()} == {
        f"advglue_dev_{t}": 10 for t in ADVGLUE_SIZES
    }
    assert (advglue["documents"], advglue["generations"], advglue["new_tokens_bound"]) == (30, 30, 480)
    # 30 documents over 3 system-prompt types, 3 samples each (n_samples), max_gen_toks 150.
    assert (stereotype["documents"], stereotype["generations"], stereotype["new_tokens_bound"]) == (
        30,
        90,
        13500,
    )
    assert stereotype["prompt_tokens_all_samples"] == 3 * stereotype["prompt_tokens"]
    total = figures["total"]
    assert (total["documents"], total["generations"], total["new_tokens_bound"]) == (60, 120, 13980)

    task = load_task("trust_advglue", {"n_samples": 3})
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    lengths = [
        len(tokenizer(task.fewshot_context(doc, 0), add_special_tokens=False)["input_ids"])
        for doc in list(task.dataset["test"])[:30]
    ]
    assert advglue["prompt_tokens"] == sum(lengths)
    assert max(d["prompt_tokens_max"] for d in advglue["scenarios"].values()) == max(lengths)


def test_a_fractional_limit_is_read_as_lm_eval_reads_it(plan_env, tiny_model, tmp_path):
    figures = run_plan(tmp_path, "--tasks", "trust_advglue", "--limit", "0.1", "--tokenizer", str(tiny_model))
    assert figures["dimensions"]["trust_advglue"]["documents"] == math.ceil(0.1 * sum(ADVGLUE_SIZES.values()))


def test_the_worst_case_of_a_mean_over_scenarios_by_hand(plan_env, tiny_model, tmp_path):
    figures = run_plan(tmp_path, "--tasks", "trust_advglue", "--limit", "30", "--tokenizer", str(tiny_model))
    half = figures["dimensions"]["trust_advglue"]["half_width"]
    # Three scenarios of 10: 1.96 x 100 x sqrt(3 x 0.25 / 10) / 3.
    assert half["worst"] == pytest.approx(1.96 * 100 * math.sqrt(3 * 0.25 / 10) / 3)
    assert half["paired_worst"] == pytest.approx(2 * half["worst"])
    assert half["estimated"] is None and half["paired_estimated"] is None
    assert figures["total"]["half_width"]["worst"] == pytest.approx(half["worst"])


def test_the_default_tokenizer_is_the_embedded_smollm2(plan_env, tmp_path):
    from transformers import AutoTokenizer

    from lm_eval_trust.model_adapters import embedded

    figures = run_plan(tmp_path, "--tasks", "trust_advglue", "--limit", "3")
    assert figures["design"]["tokenizer"] == "smollm2-135m-instruct"
    tokenizer = AutoTokenizer.from_pretrained(embedded.resolve("smollm2-135m-instruct"))
    task = load_task("trust_advglue", {})
    expected = sum(
        len(tokenizer(task.fewshot_context(doc, 0), add_special_tokens=False)["input_ids"])
        for doc in list(task.dataset["test"])[:3]
    )
    assert figures["dimensions"]["trust_advglue"]["prompt_tokens"] == expected


# Fairness's worst case holds for answers that parse (see tasks/fairness/fairness.py: worst_case): the
# scripted pool rarely names its keywords, so fairness is checked on pools that always do.
UNCONDITIONAL = ",".join(f"trust_{d}" for d in DIMENSIONS if d != "fairness")
FAIRNESS_POOLS = (["Yes, low", "No, high"], ["Yes, low", "No, high", "Yes, high"])


def _write(path, answers):
    path.write_text(json.dumps(answers))
    return path


@pytest.fixture(scope="module")
def pilots(shared_data, trust_cache, tmp_path_factory, other_answers):
    """Two scripted 'models' on every dimension: 40 documents each, 2 samples per prompt; fairness
    110 documents (10 per setting) with answers that parse."""
    root = tmp_path_factory.mktemp("pilots")
    design = ["--limit", "40", "--metadata", '{"n_samples": 2}']
    scripted(shared_data, trust_cache, root / "base", design, UNCONDITIONAL)
    scripted(shared_data, trust_cache, root / "other", design, UNCONDITIONAL, other_answers)
    fair = ["--limit", "110"]
    for name, pool in zip(("fair_base", "fair_other"), FAIRNESS_POOLS, strict=True):
        answers = _write(root / f"{name}.json", pool)
        scripted(shared_data, trust_cache, root / name, fair, "trust_fairness", answers)
    return root, design, fair


def _check_worst_covers_estimates(figures: dict, names: list[str]) -> None:
    assert sorted(figures["dimensions"]) == sorted(names)
    for name, d in [*figures["dimensions"].items(), ("total", figures["total"])]:
        half = d["half_width"]
        assert half["estimated"] is not None and half["paired_estimated"] is not None, (name, d.get("notes"))
        assert half["worst"] >= half["estimated"], name
        assert half["paired_worst"] >= half["paired_estimated"], name


def test_the_worst_case_covers_every_dimensions_estimate(plan_env, tiny_model, tmp_path, pilots):
    root, design, fair = pilots
    common = ["--tokenizer", str(tiny_model), "--iters", "100"]
    figures = run_plan(
        tmp_path,
        "--tasks",
        UNCONDITIONAL,
        *design,
        *common,
        "--samples",
        str(root / "base"),
        "--other_samples",
        str(root / "other"),
    )
    _check_worst_covers_estimates(figures, UNCONDITIONAL.split(","))
    spread = [n for n, d in figures["dimensions"].items() if d["half_width"]["estimated"] > 0]
    # The script never leaks (privacy), and 40 ood documents over 36 runs leave too few repeats.
    assert spread == ["trust_adv_demo", "trust_advglue", "trust_ethics", "trust_stereotype", "trust_toxicity"]
    figures = run_plan(
        tmp_path,
        "--tasks",
        "trust_fairness",
        *fair,
        *common,
        "--samples",
        str(root / "fair_base"),
        "--other_samples",
        str(root / "fair_other"),
    )
    _check_worst_covers_estimates(figures, ["trust_fairness"])
    assert figures["dimensions"]["trust_fairness"]["half_width"]["estimated"] > 0


@pytest.fixture(scope="module")
def advglue_runs(shared_data, trust_cache, tmp_path_factory, other_answers):
    """A pilot (20 documents per scenario) and the planned run (70 per scenario), two models each."""
    root = tmp_path_factory.mktemp("advglue_runs")
    runs = {}
    for name, k, seed in (("pilot", 20, 0), ("planned", 70, 1)):
        for model, answers in (("base", None), ("other", other_answers)):
            out = root / name / model
            scripted(shared_data, trust_cache, out, per_scenario(k, seed), "trust_advglue", answers)
            runs[name, model] = out
    return runs


def _items(out) -> tuple[list, list, dict]:
    results, samples = read_results(out)
    samples.sort(key=lambda s: s["doc"]["doc_index"])
    return [s["score"] for s in samples], [s["doc"]["scenario"] for s in samples], results


def test_predicted_half_widths_match_the_bootstrap_of_the_planned_run(
    plan_env, tiny_model, tmp_path, advglue_runs
):
    figures = run_plan(
        tmp_path,
        "--tasks",
        "trust_advglue",
        *per_scenario(70, 1),
        "--tokenizer",
        str(tiny_model),
        "--samples",
        str(advglue_runs["pilot", "base"]),
        "--other_samples",
        str(advglue_runs["pilot", "other"]),
    )
    planned = figures["dimensions"]["trust_advglue"]
    base, strata, results = _items(advglue_runs["planned", "base"])
    other, other_strata, _ = _items(advglue_runs["planned", "other"])
    assert strata == other_strata
    assert planned["documents"] == len(base) == results["results"]["trust_advglue"]["sample_len"]

    from lm_eval_trust.tasks.advglue import advglue

    scenarios = sorted(set(strata))

    def score(items):
        return advglue.aggregate(items, scenarios)["score"]

    replicates = np.array(
        [score([base[i] for i in rows]) for rows in stats.stratified_draws(strata, stats.DEFAULT_ITERS, 0)]
    )
    low, high = stats.percentile_interval(replicates)
    change = stats.paired_change(base, other, strata, score)
    real = {"estimated": (high - low) / 2, "paired_estimated": (change.high - change.low) / 2}
    for key, width in real.items():
        predicted = planned["half_width"][key]
        assert width / 2 <= predicted <= 2 * width, (key, predicted, width)
    assert planned["half_width"]["worst"] >= real["estimated"]
    assert planned["half_width"]["paired_worst"] >= real["paired_estimated"]


def test_a_task_without_earlier_logs_says_why_it_has_no_estimate(
    plan_env, tiny_model, tmp_path, advglue_runs
):
    figures = run_plan(
        tmp_path,
        *ADVGLUE_AND_STEREOTYPE,
        "--tokenizer",
        str(tiny_model),
        "--samples",
        str(advglue_runs["pilot", "base"]),
    )
    advglue, stereotype = figures["dimensions"]["trust_advglue"], figures["dimensions"]["trust_stereotype"]
    assert advglue["half_width"]["estimated"] > 0
    assert advglue["half_width"]["paired_estimated"] is None
    assert stereotype["half_width"]["estimated"] is None
    assert stereotype["notes"]["estimated"] == "no sample logs of this task among --samples"
    assert figures["total"]["half_width"]["estimated"] is None


def test_bad_input_is_named(plan_env, tiny_model, tmp_path, capsys):
    assert plan_main(["--tasks", "trust_nope", "--tokenizer", str(tiny_model)]) == 2
    assert "--tasks trust_nope: not a trust task or group" in capsys.readouterr().err
    assert plan_main(["--tasks", "trust_advglue", "--other_samples", str(tmp_path)]) == 2
    assert "--other_samples pairs with --samples" in capsys.readouterr().err
    assert plan_main(["--tasks", "trust_advglue", "--limit", "0"]) == 2
    assert "--limit 0 selects no documents" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="2"):
        plan_main(["--tasks", "trust_advglue", "--metadata", "{n_samples: 2}"])
    assert "argument --metadata: not valid JSON" in capsys.readouterr().err
    assert plan_main(["--tasks", "trust_advglue", "--samples", str(tmp_path)]) == 2
    assert f"--samples: {tmp_path}: no samples_*.jsonl below this folder" in capsys.readouterr().err


def test_a_design_of_unscored_scenarios_has_no_worst_case(plan_env, tiny_model, tmp_path):
    figures = run_plan(
        tmp_path,
        "--tasks",
        "trust_ethics",
        "--metadata",
        '{"scenarios": ["ethics_cm_long_zeroshot"]}',
        "--limit",
        "5",
        "--tokenizer",
        str(tiny_model),
    )
    ethics = figures["dimensions"]["trust_ethics"]
    assert ethics["documents"] == 5
    assert ethics["half_width"]["worst"] is None and ethics["half_width"]["paired_worst"] is None
    assert ethics["notes"]["worst"] == "no planned document enters the score"
    assert figures["total"]["half_width"]["worst"] is None
