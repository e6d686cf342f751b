"""The sweep's units on three executors: here in order, on a local Ray cluster, and as submitit job
arrays (submitit's local executor) give byte-identical merged sample logs and equal scores; a shard
that fails is named and run again alone; a deleted or cut shard output stops the merge; a changed
--metadata reruns only the shards whose requests it changes."""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from conftest import BIN, cli_env

from lm_eval_trust.cluster import executors, merge, units
from lm_eval_trust.report.runs import find_results

SETTINGS = ("dense", "magnitude-2of4-s50")
TASKS = ("trust_advglue", "trust_toxicity")  # greedy, and sampled (3 samples a prompt)
RAY_PORT = "6391"


def sweep_command(tiny_model: Path, out: Path, *extra: str, metadata: str = '{"n_samples": 3}') -> list[str]:
    return [
        str(BIN / "lm-eval-trust"),
        "sweep",
        *("--model_args", f"pretrained={tiny_model}", "--settings", "dense", "magnitude:2:4"),
        *("--tasks", ",".join(TASKS), "--limit", "6", "--metadata", metadata),
        *("--gen_kwargs", "max_gen_toks=8", "--apply_chat_template", "--batch_size", "4"),
        *("--bootstrap_iters", "100", "--output_path", str(out), *extra),
    ]


def run(command: list[str], env: dict, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def merged_logs(out: Path) -> dict:
    """Each setting's merged sample log of each task, as bytes (lines in document order)."""
    logs = {}
    for setting in SETTINGS:
        for task in TASKS:
            (path,) = (out / setting).glob(f"*/samples_{task}_*.jsonl")
            logs[setting, task] = path.read_bytes()
    return logs


def scores(out: Path) -> dict:
    found = {}
    for setting in SETTINGS:
        (path,) = (out / setting).glob("*/results_*.json")
        results = json.loads(path.read_text())["results"]
        for task in TASKS:
            found[setting, task] = {k: v for k, v in results[task].items() if "stderr" not in k}
    return found


def ran(stdout: str) -> list[str]:
    """The units a sweep ran (local executor), by name."""
    return [line.split("] ", 1)[1].split(":")[0] for line in stdout.splitlines() if line.endswith("so far)")]


@pytest.fixture(scope="module")
def runs(shared_data, trust_cache, tiny_model, tmp_path_factory):
    """The same sharded sweep (3 shards a task) three ways, and once unsharded."""
    root = tmp_path_factory.mktemp("cluster")
    env = cli_env(shared_data, trust_cache)
    out = {name: root / name for name in ("local", "ray", "slurm", "unsharded")}
    run(sweep_command(tiny_model, out["local"], "--shards", "3"), env)
    ray, on_ray = str(BIN / "ray"), {**env, "RAY_AUTH_MODE": "disabled"}  # a test cluster on loopback
    start = [ray, "start", "--head", "--port", RAY_PORT, "--num-cpus", "2", "--disable-usage-stats"]
    run([*start, "--include-dashboard", "false", "--node-ip-address", "127.0.0.1"], on_ray)
    try:
        executor = ("--executor", "ray", "--ray_address", f"127.0.0.1:{RAY_PORT}")
        run(sweep_command(tiny_model, out["ray"], "--shards", "3", *executor), on_ray)
    finally:
        subprocess.run([ray, "stop", "--force"], env=on_ray, capture_output=True, timeout=120)
    slurm = ("--executor", "slurm", "--slurm_args", '{"cluster": "local", "timeout_min": 30}')
    run(sweep_command(tiny_model, out["slurm"], "--shards", "3", *slurm), env)
    run(sweep_command(tiny_model, out["unsharded"]), env)
    return {"env": env, "model": tiny_model, **out}


def test_local_ray_and_slurm_give_the_same_bytes_and_scores(runs):
    local = merged_logs(runs["local"])
    assert merged_logs(runs["ray"]) == local
    assert merged_logs(runs["slurm"]) == local
    assert scores(runs["ray"]) == scores(runs["local"]) == scores(runs["slurm"])
    for (_, task), data in local.items():
        lines = [json.loads(line) for line in data.decode().splitlines()]
        assert [line["doc_id"] for line in lines] == list(range(6)), task
        assert len(lines[0]["resps"][0]) == (3 if task == "trust_toxicity" else 1)
    manifest = json.loads((runs["local"] / "units" / units.MANIFEST).read_text())["units"]
    shards = [u for u in manifest if u["kind"] == "evaluate"]
    assert len(shards) == len(SETTINGS) * len(TASKS) * 3
    assert [u["name"] for u in manifest if u["kind"] == "compress"] == ["compress"]  # the pruned setting
    # One machine, unsharded: the same scores; the report reads settings, not their shards.
    assert scores(runs["unsharded"]) == scores(runs["local"])
    assert len(find_results([runs["local"]])) == len(SETTINGS)
    # The shards' request caches, merged: every answer an unsharded run keeps, under its own key.
    for setting in SETTINGS:
        assert cache_keys(runs["local"] / setting) == cache_keys(runs["unsharded"] / setting)


def cache_keys(folder: Path) -> dict:
    with sqlite3.connect(folder / "cache" / "requests_rank0.db") as db:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: sorted(k for (k,) in db.execute(f'SELECT key FROM "{t}"')) for t in tables}


def test_a_failing_shard_is_tabled_and_run_again_alone(runs, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(runs["local"], out)
    shard = out / "units" / "dense" / "trust_toxicity.3-4of6"
    shutil.rmtree(shard)
    shard.write_text("in the way")  # the unit cannot make its folder: it fails
    failed = run(sweep_command(runs["model"], out, "--shards", "3"), runs["env"], ok=False)
    assert failed.returncode == 1
    assert "1 units failed" in failed.stderr and "trust_toxicity.3-4of6" in failed.stderr
    assert str(shard / "unit.log") in failed.stderr
    assert ran(failed.stdout) == ["dense trust_toxicity.3-4of6"]
    shard.unlink()
    again = run(sweep_command(runs["model"], out, "--shards", "3"), runs["env"])
    assert ran(again.stdout) == ["dense trust_toxicity.3-4of6"]
    assert merged_logs(out) == merged_logs(runs["local"])


def test_a_deleted_or_cut_shard_output_stops_the_merge_naming_the_shard(runs, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(runs["local"], out)
    manifest = json.loads((out / "units" / units.MANIFEST).read_text())["units"]
    planned = [
        units.Unit(**{**row, "folder": row["folder"].replace(str(runs["local"]), str(out))}, command=())
        for row in manifest
    ]
    dense = [u for u in planned if u.setting == "dense"]
    shard = next(u for u in dense if u.name == "trust_advglue.3-4of6")
    (log,) = Path(shard.folder).rglob("samples_trust_advglue_*.jsonl")
    log.write_text(log.read_text().splitlines(keepends=True)[0])  # one of its two lines
    with pytest.raises(merge.MergeError, match=r"trust_advglue.3-4of6.*manifest says 3..4"):
        merge.merge_setting(out / "dense", dense, {})
    (results,) = Path(shard.folder).rglob("results_*.json")
    results.unlink()
    with pytest.raises(merge.MergeError) as err:
        merge.merge_setting(out / "dense", dense, {})
    assert "1 of 6 shards" in str(err.value) and f"log {shard.log}" in str(err.value)


def test_a_changed_metadata_reruns_only_the_shards_it_changes(runs, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(runs["local"], out)
    shards = ("--shards", "3", "--settings", "dense")  # the last --settings wins: dense alone
    again = run(sweep_command(runs["model"], out, *shards, metadata='{"n_samples": 2}'), runs["env"])
    assert ran(again.stdout) == [f"dense trust_toxicity.{r}of6" for r in ("0-2", "3-4", "5-5")]
    logs = merged_logs(out)
    first = json.loads(logs["dense", "trust_toxicity"].decode().splitlines()[0])
    assert len(first["resps"][0]) == 2
    assert logs["dense", "trust_advglue"] == merged_logs(runs["local"])["dense", "trust_advglue"]


def test_shards_are_cut_by_cost_and_light_tasks_packed():
    assert units.cost_ranges([1] * 10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert units.cost_ranges([100, 1, 1, 1], 2) == [(0, 1), (1, 4)]
    assert units.cost_ranges([5, 5], 4) == [(0, 1), (1, 2)]  # no more shards than documents
    heavy = units.TaskWork("heavy", [10] * 10, [], {})
    light = [units.TaskWork(f"light{i}", [1] * 5, [], {}) for i in range(3)]
    groups = units.shard_groups([heavy, *light], None, 50)
    assert sorted(g["heavy"] for g in groups if "heavy" in g) == [(0, 5), (5, 10)]
    packed = [g for g in groups if "heavy" not in g]
    assert packed == [{"light0": (0, 5), "light1": (0, 5), "light2": (0, 5)}]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"shards": 0}, "--shards 0: give a positive number"),
        ({"shards": 2, "unit_tokens": 9}, "give one of them"),
        ({"retries": -1}, "--retries -1"),
        ({"ray_address": "10.0.0.1:6379"}, "--ray_address is for --executor ray"),
        ({"executor": "slurm", "slurm_args": "{partition: gpu}"}, "--slurm_args is not JSON"),
        ({"executor": "slurm", "slurm_args": '["gpu"]'}, "must be a JSON object"),
        ({"slurm_args": '{"cluster": "local"}'}, "--slurm_args is for --executor slurm"),
    ],
)
def test_bad_executor_flags_name_the_flag(flags, message):
    args = {"executor": "local", "shards": None, "unit_tokens": None, "retries": None}
    args = argparse.Namespace(**{**args, "ray_address": None, "slurm_args": None, **flags})
    with pytest.raises(units.UnitError, match=message):
        executors.check_arguments(args)


def test_an_unknown_submitit_parameter_is_refused_before_any_unit(tmp_path):
    with pytest.raises(units.UnitError, match="--slurm_args: .*partiton"):
        executors.slurm_executor({"cluster": "local", "slurm_partiton": "gpu"}, tmp_path)


def test_sharding_a_task_that_is_not_a_trust_task_is_refused_before_any_unit(tmp_path, capsys):
    from lm_eval_trust.sweep import sweep_main

    argv = ["--model_args", "pretrained=m", "--settings", "dense", "--tasks", "mmlu", "--shards", "2"]
    assert sweep_main([*argv, "--output_path", str(tmp_path / "out")]) == 2
    assert "--shards and --unit_tokens split trust tasks only" in capsys.readouterr().err
    assert not (tmp_path / "out" / "units").exists()
