"""A sharded setting's results, made from its shards' sample logs only when every shard is done as
planned (fail closed), scored from the raw responses by the path `rescore` takes.

Each shard's marker must hold the key of the unit the plan makes now, its log must hold exactly its
planned documents, and every shard must have run the same model (weights, engine, precision, seed).
Otherwise nothing is written and the error names each shard and where its log is. The merged sample
logs are in document order, with lm-eval's `doc_id` the document's index in the task (a shard run
with `--samples` numbers its own lines from 0). The shards' request caches are merged into the
setting's, so a later unsharded run of the setting reads every answer back.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sqlite3
from datetime import datetime
from pathlib import Path

from lm_eval_trust.atomic import atomic_path
from lm_eval_trust.cluster.units import REQUESTS, SETTING_MARKER, Unit
from lm_eval_trust.report.runs import ResultsError, read_results
from lm_eval_trust.rescore import (
    RescoreError,
    SamplesFile,
    dimension_of,
    read_log,
    rescore_task,
    task_results,
)

# What every shard of a setting must share: the model it ran, as its results record it.
SAME_MODEL = (
    "model",
    "model_args",
    "weights_sha256",
    "model_fingerprint",
    "computes_in",
    "engine",
    "sampling_seed",
    "lm_eval_trust_version",
)
PER_TASK = ("configs", "versions", "n-shot", "higher_is_better")


class MergeError(ValueError):
    """A setting cannot be merged; the message names each shard at fault and its log."""


def unmerged(units: list[Unit]) -> list[str]:
    """One line per shard that is not done as planned, with its folder and log."""
    lines = []
    for unit in units:
        marker = Path(unit.folder) / unit.marker_name
        if unit.is_done():
            continue
        why = "its output or done marker is missing" if not marker.is_file() else "it ran another command"
        lines.append(f"  {unit.label}: {why} (output {unit.folder}, log {unit.log})")
    return lines


def shard_log(unit: Unit, task: str) -> tuple[Path, list[dict], dict]:
    """A shard's sample log of `task`, checked to hold its planned documents, and its results."""
    results = sorted(Path(unit.folder).rglob("results_*.json"))
    if len(results) != 1:
        raise MergeError(
            f"{unit.label}: {len(results)} results files in {unit.folder}, one expected; run it again"
        )
    logs = sorted(results[0].parent.glob(f"samples_{task}_*.jsonl"))
    if len(logs) != 1:
        raise MergeError(
            f"{unit.label}: no single sample log of {task} in {results[0].parent} (log {unit.log})"
        )
    lines = read_log(logs[0])
    first, stop = unit.docs[task]
    indices = sorted(line["doc"].get("doc_index") for line in lines)
    if indices != list(range(first, stop)):
        raise MergeError(
            f"{unit.label}: {logs[0]} logs documents {indices[:3]}..., the manifest says {first}..{stop - 1}; "
            f"delete {unit.folder} and run the same sweep again"
        )
    return logs[0], lines, read_results(results[0])


def merge_setting(folder: Path, units: list[Unit], options: dict[str, dict]) -> Path:
    """Write the setting's results JSON and sample logs into `folder`; the results path."""
    shards = [u for u in units if u.kind == "evaluate"]
    missing = unmerged(shards)
    if missing:
        raise MergeError(
            f"{folder.name}: not merged, {len(missing)} of {len(shards)} shards are not done as planned:\n"
            + "\n".join(missing)
            + "\nRun the same sweep again: it runs only these"
        )
    tasks: dict[str, list] = {}
    first_data = None
    for unit in shards:
        for task in unit.docs:
            try:
                path, lines, data = shard_log(unit, task)
            except (RescoreError, ResultsError) as err:
                raise MergeError(f"{unit.label}: {err}") from None
            first_data = first_data or data
            for key in SAME_MODEL:
                if data["config"].get(key) != first_data["config"].get(key):
                    raise MergeError(
                        f"{unit.label} ran config.{key}={data['config'].get(key)!r}, another shard of "
                        f"{folder.name} {first_data['config'].get(key)!r}; delete its folder {unit.folder} "
                        "and run the same sweep again"
                    )
            entry = tasks.setdefault(task, [path, data, []])
            entry[2] += lines
    merged = _merged(first_data, tasks, options, folder)
    relative = next(Path(u.folder) for u in shards)
    model_dir = next(relative.rglob("results_*.json")).parent.relative_to(relative)
    date = datetime.now().isoformat().replace(":", "-")
    with atomic_path(folder / model_dir, directory=True) as tmp:
        for task, lines in merged.pop("_lines").items():
            with open(tmp / f"samples_{task}_{date}.jsonl", "w", encoding="utf-8") as f:
                f.writelines(json.dumps(line, default=str) + "\n" for line in lines)
        (tmp / f"results_{date}.json").write_text(json.dumps(merged, indent=2, default=str), encoding="utf-8")
    merge_caches(shards, folder / "cache")
    return folder / model_dir / f"results_{date}.json"


def _merged(template: dict, tasks: dict, options: dict[str, dict], folder: Path) -> dict:
    """One results JSON over every task; each task scored by rescore's path from its raw responses,
    with its options as the plan built them now (a scoring option changed since a shard ran applies)."""
    out = copy.deepcopy(template)
    for key in ("results", "group_subtasks", "n-samples", *PER_TASK):
        out[key] = {}
    out["groups"] = {}
    out["config"]["use_cache"] = str(folder / "cache" / REQUESTS)
    out["_lines"] = {}
    for task, (path, data, lines) in sorted(tasks.items()):
        lines.sort(key=lambda line: line["doc"]["doc_index"])
        for line in lines:
            line["doc_id"] = line["doc"]["doc_index"]
        config = data["configs"][task]
        dimension = dimension_of(config, SamplesFile(path, task, path, named=False))
        recorded = config["metadata"]
        overrides = {k: v for k, v in options[task].items() if recorded.get(k) != v}
        try:
            metrics, lines, meta = rescore_task(dimension, lines, recorded, overrides, task)
        except RescoreError as err:
            raise MergeError(f"{folder.name}: {err}") from None
        for key in PER_TASK:
            out[key][task] = copy.deepcopy(data[key][task])
        out["configs"][task]["metadata"] = meta
        out["results"][task] = task_results(data["results"].get(task, {}), metrics, len(lines))
        out["group_subtasks"][task] = []
        out["n-samples"][task] = {"original": data["n-samples"][task]["original"], "effective": len(lines)}
        out["_lines"][task] = lines
    return out


def merge_caches(units: list[Unit], cache: Path) -> None:
    """Every shard's request-cache rows (each model table) into the setting's cache file."""
    cache.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(cache / f"{REQUESTS}_rank0.db") as db:
        for unit in units:
            for part in sorted(Path(unit.folder).glob(f"{REQUESTS}_rank*.db")):
                db.execute("ATTACH DATABASE ? AS shard", (str(part),))
                tables = db.execute("SELECT name FROM shard.sqlite_master WHERE type = 'table'").fetchall()
                for (table,) in tables:
                    db.execute(
                        f'CREATE TABLE IF NOT EXISTS main."{table}" (key TEXT PRIMARY KEY, value BLOB)'
                    )
                    db.execute(
                        f'INSERT OR REPLACE INTO main."{table}" SELECT key, value FROM shard."{table}"'
                    )
                db.commit()
                db.execute("DETACH DATABASE shard")


def merge_once(folder: Path, units: list[Unit], options: dict, log) -> None:
    """Merge a sharded setting unless its marker holds these shards (as last run) and options."""
    runs = [(Path(u.folder) / u.marker_name).stat().st_mtime_ns for u in units if u.is_done()]
    record = [[u.key for u in units], runs, [options[t] for u in units for t in u.docs]]
    key = hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()
    merged = Unit(
        "merge", folder.name, "", (), str(folder), key, f"merge of {len(units)} units", {}, SETTING_MARKER
    )
    if merged.is_done():
        return
    path = merge_setting(folder, units, options)
    merged.mark_done(0.0)
    log(f"sweep: {folder.name}: {len(units)} units merged into {path}")
