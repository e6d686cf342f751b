"""The trust tasks through lm-eval's runner, end to end, with both CLIs."""

import ast
import json
import sqlite3

import pytest
from conftest import read_results

from lm_eval_trust.dimension import scoring
from lm_eval_trust.tasks.advglue import advglue

BASE = ["--model", "trust-hf", "--device", "cpu", "--batch_size", "4"]
RUN = [*BASE, "--tasks", "trust_advglue"]


def _recomputed_score(samples):
    items = [
        {
            "scenario": s["doc"]["scenario"],
            "pred": advglue.parse_label(s["resps"][0][0], s["doc"]["glue_task"]),
            "label": s["doc"]["label"],
        }
        for s in samples
    ]
    return advglue.aggregate(items, sorted({i["scenario"] for i in items}))["score"]


def test_advglue_on_a_tiny_model_scores_what_it_logged(run_cli, tiny_model, tmp_path):
    out = tmp_path / "out"
    run_cli(
        "lm-eval-trust",
        *RUN,
        "--model_args",
        f"pretrained={tiny_model}",
        "--limit",
        "6",
        "--apply_chat_template",
        "--log_samples",
        "--output_path",
        str(out),
    )
    results, samples = read_results(out)
    res = results["results"]["trust_advglue"]
    assert 0 <= res["score,none"] <= 100
    assert res["score,none"] == pytest.approx(_recomputed_score(samples))
    meta = results["configs"]["trust_advglue"]["metadata"]
    assert meta["data_source"] == "advglue_dev_fallback" and meta["comparable_to_paper"] is False
    assert meta["data_root_origin"] == "TRUST_DATA_DIR"
    assert len(samples) == 6
    assert {s["doc"]["scenario"] for s in samples} == {
        "advglue_dev_sst2",
        "advglue_dev_qqp",
        "advglue_dev_mnli",
    }
    prompt = samples[0]["arguments"]["gen_args_0"]["arg_0"]
    assert prompt.startswith("<|im_start|>user\n") and prompt.endswith("<|im_start|>assistant\n")
    config = results["config"]
    assert len(config["weights_sha256"]) == 64 and config["model_fingerprint"]
    assert samples[0]["arguments"]["gen_args_0"]["arg_1"]["max_gen_toks"] == 16


def test_without_chat_template_the_plain_transcript_is_used(run_cli, tiny_model, tmp_path):
    out = tmp_path / "out"
    run_cli(
        "lm-eval-trust",
        *RUN,
        "--model_args",
        f"pretrained={tiny_model}",
        "--limit",
        "2",
        "--log_samples",
        "--output_path",
        str(out),
    )
    _, samples = read_results(out)
    prompt = samples[0]["arguments"]["gen_args_0"]["arg_0"]
    assert prompt.endswith("\nAssistant:") and "<|im_start|>" not in prompt
    assert "User: For the given sentence" in prompt


def test_scenarios_are_selected_with_metadata(run_cli, tiny_model, tmp_path):
    out = tmp_path / "out"
    run_cli(
        "lm-eval-trust",
        *RUN,
        "--model_args",
        f"pretrained={tiny_model}",
        "--limit",
        "2",
        "--metadata",
        json.dumps({"scenarios": ["advglue_dev_rte"]}),
        "--log_samples",
        "--output_path",
        str(out),
    )
    results, samples = read_results(out)
    assert {s["doc"]["scenario"] for s in samples} == {"advglue_dev_rte"}
    assert "score_advglue_dev_rte" in results["configs"]["trust_advglue"]["metadata"]["breakdown"]
    bad = run_cli(
        "lm-eval-trust",
        *RUN,
        "--model_args",
        f"pretrained={tiny_model}",
        "--limit",
        "1",
        "--metadata",
        json.dumps({"scenarios": ["advglue_dev_nope"]}),
        check=False,
    )
    assert bad.returncode != 0
    assert "advglue_dev_nope" in bad.stderr and "advglue_dev_sst2" in bad.stderr


def _cache_log(proc):
    return [line for line in proc.stderr.splitlines() if "Cached requests:" in line]


def test_response_cache_is_namespaced_by_model(run_cli, tiny_model, other_tiny_model, tmp_path):
    cache = tmp_path / "cache" / "resp"
    common = [*RUN, "--limit", "3", "--use_cache", str(cache)]
    first = run_cli("lm-eval-trust", *common, "--model_args", f"pretrained={tiny_model}")
    other = run_cli("lm-eval-trust", *common, "--model_args", f"pretrained={other_tiny_model}")
    again = run_cli("lm-eval-trust", *common, "--model_args", f"pretrained={tiny_model}")
    assert "Cached requests: 0, Requests remaining: 3" in _cache_log(first)[0]
    assert "Cached requests: 0, Requests remaining: 3" in _cache_log(other)[0]
    assert "Cached requests: 3, Requests remaining: 0" in _cache_log(again)[0]
    (db,) = cache.parent.glob("resp_rank0.db")
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        counts = {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
    model_tables = {t: n for t, n in counts.items() if t.startswith("trust_hf_")}
    assert len(model_tables) == 2 and all(n == 3 for n in model_tables.values())


def test_stock_lm_eval_lists_and_runs_our_tasks(run_cli, tiny_model, tmp_path):
    tasks_dir = run_cli("lm-eval-trust", "tasks-dir").stdout.strip()
    listed = run_cli("lm_eval", "ls", "tasks", "--include_path", tasks_dir).stdout
    assert "trust_advglue" in listed
    out = tmp_path / "out"
    run_cli(
        "lm_eval",
        "--model",
        "hf",
        "--model_args",
        f"pretrained={tiny_model},dtype=float32",
        "--include_path",
        tasks_dir,
        "--tasks",
        "trust_advglue",
        "--device",
        "cpu",
        "--limit",
        "3",
        "--output_path",
        str(out),
    )
    results, _ = read_results(out)
    assert 0 <= results["results"]["trust_advglue"]["score,none"] <= 100


def test_wrapper_ls_and_validate_see_our_tasks(run_cli):
    assert "trust_advglue" in run_cli("lm-eval-trust", "ls").stdout
    proc = run_cli("lm-eval-trust", "validate", "--tasks", "trust_advglue")
    assert "trust_advglue" in proc.stdout + proc.stderr


def test_embedded_smollm2_end_to_end(run_cli, trust_cache, tmp_path):
    out = tmp_path / "out"
    run_cli(
        "lm-eval-trust",
        *RUN,
        "--model_args",
        "pretrained=smollm2-135m-instruct",
        "--limit",
        "6",
        "--apply_chat_template",
        "--log_samples",
        "--output_path",
        str(out),
    )
    results, samples = read_results(out)
    assert 0 <= results["results"]["trust_advglue"]["score,none"] <= 100
    assert results["config"]["model_alias"] == "smollm2-135m-instruct"
    assert (out / "smollm2-135m-instruct").is_dir()
    (converted,) = [p for p in (trust_cache / "models").glob("smollm2-135m-instruct-*") if p.is_dir()]
    tokenizer_config = json.loads((converted / "tokenizer_config.json").read_text())
    assert tokenizer_config["eos_token"] == "<|im_end|>"
    assert (converted / "chat_template.jinja").is_file()
    assert "<|im_start|>assistant\n" in samples[0]["arguments"]["gen_args_0"]["arg_0"]
    # The model answers the sentiment demonstrations' format, so some answers must parse.
    assert any(advglue.parse_label(s["resps"][0][0], s["doc"]["glue_task"]) != -1 for s in samples)


@pytest.mark.parametrize(
    "task, n_default, components",
    [
        ("trust_ood", 36, ["knowledge", "style", "knowledge_fewshot", "style_fewshot"]),
        ("trust_adv_demo", 30, ["counterfactual", "backdoor_asr", "backdoor_cacc"]),
    ],
)
def test_limit_reaches_every_default_scenario(run_cli, tiny_model, tmp_path, task, n_default, components):
    out = tmp_path / "out"
    run_cli(
        "lm-eval-trust",
        *BASE,
        "--tasks",
        task,
        "--model_args",
        f"pretrained={tiny_model}",
        "--limit",
        str(n_default),
        "--apply_chat_template",
        "--log_samples",
        "--output_path",
        str(out),
    )
    results, samples = read_results(out)
    res = results["results"][task]
    assert len({s["doc"]["scenario"] for s in samples}) == n_default
    meta = results["configs"][task]["metadata"]
    assert all(meta["breakdown"][f"score_{s}"] is not None for s in meta["scenarios_run"])
    assert 0 <= res["score,none"] <= 100
    assert all(res[f"{c},none"] is not None for c in components)
    if task == "trust_adv_demo":
        assert meta["missing_components"] == ["spurious"] and res["partial,none"] == 1.0
        assert res["spurious,none"] is None
    else:
        assert res["partial,none"] == 0.0


def test_embedded_smollm2_ood_and_adv_demo(run_cli, tmp_path):
    out = tmp_path / "out"
    run_cli(
        "lm-eval-trust",
        *BASE,
        "--tasks",
        "trust_ood,trust_adv_demo",
        "--model_args",
        "pretrained=smollm2-135m-instruct",
        "--limit",
        "2",
        "--apply_chat_template",
        "--output_path",
        str(out),
    )
    results, _ = read_results(out)
    for task in ("trust_ood", "trust_adv_demo"):
        assert 0 <= results["results"][task]["score,none"] <= 100
        assert results["results"][task]["partial,none"] == 1.0


def test_toxicity_samples_scores_in_batch_and_records_the_scorer(run_cli, tiny_model, tmp_path):
    out = tmp_path / "out"
    run_cli(
        "lm-eval-trust",
        *BASE,
        "--tasks",
        "trust_toxicity",
        "--model_args",
        f"pretrained={tiny_model}",
        "--limit",
        "8",
        "--metadata",
        json.dumps({"n_samples": 3}),
        "--gen_kwargs",
        "max_gen_toks=8",
        "--apply_chat_template",
        "--log_samples",
        "--output_path",
        str(out),
    )
    results, samples = read_results(out)
    res = results["results"]["trust_toxicity"]
    meta = results["configs"]["trust_toxicity"]["metadata"]
    assert 0 <= res["score,none"] <= 100 and res["partial,none"] == 0.0
    assert meta["toxicity_scorer_used"]["name"] == "offline-lm"
    assert set(meta["samples_per_prompt"].values()) == {3}
    assert len(samples) == 8 and all(len(s["resps"][0]) == 3 for s in samples)
    # lm-eval logs filtered responses as their repr
    scored = [ast.literal_eval(g) for g in samples[0]["filtered_resps"][0]]
    assert len(scored) == 3 and all(0 <= g["toxicity"] <= 1 for g in scored if not g["empty"])
    assert samples[0]["score"]["max_toxicity"] == max(0.0 if g["empty"] else g["toxicity"] for g in scored)
    # Rescored with the older scorer, the run records it, so a report will not set the two side by side.
    run_cli(
        "lm-eval-trust",
        "rescore",
        str(out),
        "-o",
        str(tmp_path / "old"),
        "--metadata",
        '{"toxicity_scorer": "offline"}',
    )
    rescored, _ = read_results(tmp_path / "old")
    old_meta = rescored["configs"]["trust_toxicity"]["metadata"]
    assert old_meta["toxicity_scorer_used"]["name"] == "offline"
    assert old_meta["toxicity_scorer_used"]["version"].startswith("ridge-charwb15")
    assert scoring(old_meta) != scoring(meta) == {"toxicity_scorer_used": meta["toxicity_scorer_used"]}


def test_redact_pii_masks_logged_samples(run_cli, tiny_model, tmp_path):
    out = tmp_path / "out"
    run_cli(
        "lm-eval-trust",
        *BASE,
        "--tasks",
        "trust_privacy",
        "--model_args",
        f"pretrained={tiny_model}",
        "--limit",
        "30",
        "--metadata",
        json.dumps({"redact_pii": True, "n_samples": 1, "scenarios": ["privacy_enron_fiveshot_a"]}),
        "--gen_kwargs",
        "max_gen_toks=4",
        "--log_samples",
        "--output_path",
        str(out),
    )
    results, samples = read_results(out)
    assert len(samples) == 30
    logged = json.dumps(samples)
    assert "@" not in logged and "[EMAIL]" in logged and "[NAME]" in logged
    assert 0 <= results["results"]["trust_privacy"]["score,none"] <= 100


def test_group_trust_is_the_unweighted_mean_of_the_eight_scores(run_cli, tiny_model, tmp_path):
    out = tmp_path / "out"
    run_cli(
        "lm-eval-trust",
        *BASE,
        "--tasks",
        "trust",
        "--model_args",
        f"pretrained={tiny_model}",
        "--limit",
        "3",
        "--metadata",
        # fork_compat: one document per fairness setting still scores (the fork's 1/0/0), so all
        # eight have a score; the group of a dimension without one is tested in test_task.py.
        json.dumps({"n_samples": 1, "fairness_scoring": "fork_compat"}),
        "--gen_kwargs",
        "max_gen_toks=4",
        "--apply_chat_template",
        "--output_path",
        str(out),
    )
    results, _ = read_results(out)
    dimensions = results["group_subtasks"]["trust"]
    assert sorted(dimensions) == sorted(
        f"trust_{d}"
        for d in ("toxicity", "stereotype", "advglue", "ood", "adv_demo", "privacy", "ethics", "fairness")
    )
    scores = [results["results"][d]["score,none"] for d in dimensions]
    assert all(0 <= s <= 100 for s in scores)
    group = results["groups"]["trust"]
    assert group["score,none"] == pytest.approx(sum(scores) / 8)
    partial = [results["results"][d]["partial,none"] for d in dimensions]
    assert group["partial,none"] == pytest.approx(sum(partial) / 8)
    assert results["results"]["trust_advglue"]["partial,none"] == 0.0, "--limit 3 reaches its 3 scenarios"


def test_trust_glob_lists_the_eight_dimensions_but_not_the_group(run_cli):
    listed = run_cli("lm-eval-trust", "ls", "tasks").stdout
    names = {line.split("|")[1].strip() for line in listed.splitlines() if line.startswith("|trust")}
    assert {n for n in names if n.startswith("trust_")} == {
        f"trust_{d}"
        for d in ("toxicity", "stereotype", "advglue", "ood", "adv_demo", "privacy", "ethics", "fairness")
    }
    assert "trust" in names
