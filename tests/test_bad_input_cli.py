"""Bad run arguments caught before any model work (`lm_eval_trust.preflight`), and lost results.

Each command below names a model path that does not exist: had the check come after model
loading, the error would be the loader's, not the message asserted here.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3

import pytest

from lm_eval_trust import preflight

MISSING_MODEL = ("--model", "trust-hf", "--model_args", "pretrained=/nonexistent/model", "--device", "cpu")


def _run(run_cli, *args):
    return run_cli("lm-eval-trust", *MISSING_MODEL, "--tasks", "trust_advglue", *args, check=False)


@pytest.mark.parametrize("size", ["0", "-1", "abc", "auto:0", "1.5"])
def test_bad_batch_size_is_caught_before_the_model(run_cli, size):
    proc = _run(run_cli, "--batch_size", size)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"--batch_size {size!r} is not a batch size" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_output_path_below_a_file_is_caught_before_the_model(run_cli, tmp_path):
    blocker = tmp_path / "results.txt"
    blocker.write_text("not a folder")
    proc = _run(run_cli, "--output_path", str(blocker / "out"))
    assert proc.returncode == 2
    assert f"lies below {blocker}, which is a file" in proc.stderr


def test_temperature_zero_on_a_sampled_task_is_caught_before_the_model(run_cli):
    proc = run_cli(
        "lm-eval-trust",
        *MISSING_MODEL,
        *("--tasks", "trust_toxicity", "--gen_kwargs", "temperature=0"),
        check=False,
    )
    assert proc.returncode == 2
    assert "temperature=0 cannot sample, and trust_toxicity sample" in proc.stderr
    assert "do_sample=false" in proc.stderr


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        (
            '{"toxicity_scorer": "ofline"}',
            "toxicity_scorer 'ofline' is unknown; choose from offline-lm, offline",
        ),
        (
            '{"toxicity_scorer": "perspective", "perspective_qps": 0}',
            "perspective_qps 0 is not a positive number",
        ),
        (
            '{"toxicity_scorer": "perspective", "perspective_qps": "fast"}',
            "perspective_qps 'fast' is not a positive",
        ),
    ],
)
def test_bad_toxicity_scorer_options_are_caught_before_the_model(run_cli, metadata, message):
    proc = run_cli("lm-eval-trust", *MISSING_MODEL, "--tasks", "trust", "--metadata", metadata, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr


def _args(**kw) -> argparse.Namespace:
    base = {"command": "run", "tasks": ["trust"], "limit": None, "gen_kwargs": None, "device": "cpu"}
    return argparse.Namespace(**{**base, **kw})


def test_greedy_override_with_temperature_zero_is_allowed():
    preflight.check(_args(gen_kwargs={"temperature": 0, "do_sample": "false"}))
    preflight.check(_args(tasks=["trust_advglue"], gen_kwargs={"temperature": 0}))


@pytest.mark.parametrize("value", [0, -5, 2.5, "many"])
def test_bad_max_gen_toks(value):
    with pytest.raises(preflight.PreflightError, match="max_gen_toks"):
        preflight.check(_args(gen_kwargs={"max_gen_toks": value}))


def test_num_fewshot_on_trust_tasks_warns(caplog):
    with caplog.at_level(logging.WARNING):
        preflight.check(_args(num_fewshot=5))
    assert "--num_fewshot 5 does not apply to the trust tasks" in caplog.text
    caplog.clear()
    preflight.check(_args(tasks=["arc_easy"], num_fewshot=5))
    assert "num_fewshot" not in caplog.text


def test_missing_device_is_recorded_as_the_one_used(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = _args(device=None)
    preflight.check(args)
    assert args.device == "cpu"
    with pytest.raises(preflight.PreflightError, match="no CUDA device; use --device cpu"):
        preflight.check(_args(device="cuda:0"))


def test_trust_tasks_are_matched_like_lm_eval_names():
    assert set(preflight.selected_trust_tasks(["trust"])) >= {"trust_toxicity", "trust_fairness"}
    assert set(preflight.selected_trust_tasks(["trust_t*", "mmlu"])) == {"trust_toxicity"}
    assert preflight.selected_trust_tasks(["mmlu"]) == {}


def test_damaged_request_cache_is_moved_aside_and_the_run_recomputes(run_cli, tmp_path):
    cache = tmp_path / "cache" / "requests"
    cache.parent.mkdir()
    damaged = cache.parent / "requests_rank0.db"
    damaged.write_bytes(b"this is not a database" * 100)
    out = tmp_path / "out"
    proc = run_cli(
        "lm-eval-trust",
        *("--model", "trust-scripted", "--tasks", "trust_advglue", "--limit", "2"),
        *("--use_cache", str(cache), "--output_path", str(out)),
    )
    assert f"--use_cache file {damaged} is damaged" in proc.stderr
    (aside,) = cache.parent.glob("requests_rank0.db.damaged-*")
    assert aside.read_bytes().startswith(b"this is not a database")
    assert list(out.rglob("results_*.json"))
    with sqlite3.connect(damaged) as conn:  # the new cache is a working database
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"


def test_results_written_finds_only_this_runs_file(tmp_path):
    args = _args(output_path=str(tmp_path / "out"))
    folder = tmp_path / "out" / "model"
    folder.mkdir(parents=True)
    old = folder / "results_old.json"
    old.write_text("{}")
    import os
    import time

    os.utime(old, (time.time() - 100, time.time() - 100))
    assert preflight.results_written(args, time.time() - 10) is None
    new = folder / "results_new.json"
    new.write_text("{}")
    assert preflight.results_written(args, time.time() - 10) == new
    as_file = _args(output_path=str(tmp_path / "res.json"))
    (tmp_path / "res_2026.json").write_text("{}")
    assert preflight.results_written(as_file, time.time() - 10) == tmp_path / "res_2026.json"
