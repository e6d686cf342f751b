"""The comparison data: every number of the report, JSON-able, from the runs and their sample logs.

Scores and means per model, the change against the baseline with its paired stratified bootstrap
interval (`lm_eval_trust.stats`), and the footnotes saying what a score lacks or where it came from.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass

from lm_eval_trust import stats
from lm_eval_trust.dimension import REGISTRY, registered
from lm_eval_trust.report.coverage import add_up, coverage, coverage_notes, insufficient, subsample
from lm_eval_trust.report.runs import DENSE_BITS, ITEM_KEY, ModelRun, TaskRun, read_samples

# The registered dimensions, in their order, and their labels (declared in their folders).
DIMENSIONS = tuple(REGISTRY)
SHORT_NAMES = {key: module.LABEL for key, module in registered().items()}
MEAN = "mean"


@dataclass
class Column:
    """A table column: one trust dimension, or another task's main metric."""

    key: str
    title: str
    tasks: list[str]
    metric: str = "score"
    scale: float = 1.0
    dimension: str | None = None


# -- per-sample records and bootstrap --------------------------------------------------------------


def _doc_of(sample: dict) -> dict:
    doc = sample.get("doc")
    return doc if isinstance(doc, dict) else {}


def _pair_key(task: str, sample: dict) -> tuple:
    """Pairs documents across models: the task, lm-eval's doc id and the hash of the doc itself."""
    doc_id = sample.get("doc_id", _doc_of(sample).get("doc_index"))
    return task, doc_id, sample.get("doc_hash")


def _records(run: ModelRun, column: Column) -> dict[tuple, tuple] | str:
    """{pair key: (item, stratum)} from the sample logs, or why there are none."""
    records = {}
    for task in column.tasks:
        task_run = run.tasks.get(task)
        if task_run is None or task_run.samples is None:
            return "no sample logs"
        for sample in read_samples(task_run.samples):
            if column.dimension:
                item = sample.get(ITEM_KEY)
                stratum = (item or {}).get("scenario") or _doc_of(sample).get("scenario")
            else:
                item = sample.get(column.metric)
                stratum = task
            records[_pair_key(task, sample)] = (item, stratum)
    return records


def _statistic(run: ModelRun, column: Column):
    """The score formula on a list of items: the dimension's own `aggregate`, else the scaled mean."""
    if column.dimension is None:
        return lambda items: column.scale * sum(map(float, items)) / len(items) if items else None
    metadata = run.tasks[column.tasks[0]].config.get("metadata") or {}
    module = importlib.import_module(metadata["dimension"])
    scenarios = metadata.get("scenarios_run") or []
    return lambda items: module.aggregate(items, scenarios)["score"]


def bootstrap_change(
    base: ModelRun, other: ModelRun, column: Column, iters: int, seed: int
) -> stats.ChangeInterval | str:
    """The paired bootstrap of `other - base` on the column, or the reason it cannot be computed."""
    base_records, other_records = _records(base, column), _records(other, column)
    for records in (base_records, other_records):
        if isinstance(records, str):
            return records
    shared = [k for k in base_records if k in other_records]
    if not shared:
        return "no documents in common"
    strata = [base_records[k][1] for k in shared]
    if len(set(strata)) == len(strata):
        return "one document per scenario, no spread to resample"
    try:
        return stats.paired_change(
            [base_records[k][0] for k in shared],
            [other_records[k][0] for k in shared],
            strata,
            _statistic(base, column),
            iters=iters,
            seed=seed,
        )
    except ValueError as err:
        return str(err)


# -- columns and cells -----------------------------------------------------------------------------


def _leaf_tasks(run: ModelRun, task: str) -> list[str]:
    members = run.tasks[task].config.get("members") if task in run.tasks else None
    if not members:
        return [task]
    return [leaf for member in members for leaf in _leaf_tasks(run, member)]


def other_columns(runs: list[ModelRun]) -> list[Column]:
    """Top-level non-trust tasks and groups, each with its first metric (x100 when all values are in [0, 1])."""
    columns = {}
    for run in runs:
        members = {m for t in run.tasks.values() for m in t.config.get("members") or []}
        for task, task_run in run.tasks.items():
            if task in columns or task in members or task == "trust" or task.startswith("trust_"):
                continue
            metric = next(
                (k.split(",")[0] for k in task_run.results if "," in k and "_stderr" not in k), None
            )
            if metric:
                columns[task] = Column(task, f"{task} {metric}", _leaf_tasks(run, task), metric)
    for column in columns.values():
        values = [r.tasks[column.key].metric(column.metric) for r in runs if column.key in r.tasks]
        numbers = [v for v in values if isinstance(v, int | float)]
        if numbers and all(0 <= v <= 1 for v in numbers):
            column.scale = 100.0
            column.title += " (x100)"
    return list(columns.values())


def trust_columns() -> list[Column]:
    return [Column(d, SHORT_NAMES[d], [f"trust_{d}"], dimension=d) for d in DIMENSIONS]


def cell(run: ModelRun, column: Column) -> dict:
    """Score, refusal rate, partial flag, coverage and subsample of one model on one column.

    The score is None when not run, or when the task's formula had too little data (`insufficient`
    says why).
    """
    task_run = run.tasks.get(column.key if column.dimension is None else column.tasks[0])
    value = task_run.metric(column.metric) if task_run else None
    result = {"score": None}
    if task_run:
        result["coverage"] = coverage(run, column.tasks)
        result["subsample"] = subsample(task_run)
    if not isinstance(value, int | float):
        reason = insufficient(task_run, column.metric)
        if reason:
            result["insufficient"] = reason
        return result
    result["score"] = column.scale * value
    if column.dimension:
        result["refusal_rate"] = task_run.metric("refusal_rate")
        result["partial"] = bool(task_run.metric("partial"))
        result["missing_components"] = (task_run.config.get("metadata") or {}).get("missing_components")
    return result


# -- the comparison --------------------------------------------------------------------------------


def compare(runs: list[ModelRun], baseline: ModelRun, iters: int, seed: int) -> dict:
    """Every number of the report, JSON-able: scores, means, changes and their intervals."""
    columns = trust_columns() + other_columns(runs)
    rows = []
    for run in runs:
        cells = {c.key: cell(run, c) for c in columns}
        present = [cells[d]["score"] for d in DIMENSIONS if cells[d]["score"] is not None]
        cells[MEAN] = {
            "score": sum(present) / len(present) if len(present) == len(DIMENSIONS) else None,
            "overall_available": sum(present) / len(present) if present else None,
            "n_dimensions": len(present),
            "coverage": add_up([cells[d].get("coverage") for d in DIMENSIONS]),
        }
        row = {"label": run.label, "model": run.name, "compression": run.compression_name, "cells": cells}
        row.update(
            {
                "leaderboard_name": run.leaderboard_name,
                "is_baseline": run is baseline,
                "bits": run.bits if run.bits is not None else (DENSE_BITS if run.is_dense else None),
                "pruning": run.pruning,
                "method": run.method,
                "sources": [str(s) for s in run.sources],
            }
        )
        if run is not baseline:
            _add_changes(row, run, baseline, columns, iters, seed)
        rows.append(row)
    return {
        "baseline": baseline.label,
        "bootstrap": {"iterations": iters, "seed": seed, "level": stats.DEFAULT_LEVEL},
        "columns": [{"key": c.key, "title": c.title, "metric": c.metric, "scale": c.scale} for c in columns],
        "rows": rows,
        "notes": notes(runs, columns),
    }


def _add_changes(row: dict, run: ModelRun, baseline: ModelRun, columns, iters: int, seed: int) -> None:
    base_cells = {c.key: cell(baseline, c) for c in columns}
    intervals = {}
    for column in columns:
        mine, theirs = row["cells"][column.key]["score"], base_cells[column.key]["score"]
        if mine is None or theirs is None:
            continue
        result = bootstrap_change(baseline, run, column, iters, seed)
        row["cells"][column.key].update(_change_fields(mine - theirs, result))
        if isinstance(result, stats.ChangeInterval):
            intervals[column.key] = result
    base_mean, mean = baseline_mean(base_cells), row["cells"][MEAN]["score"]
    if mean is not None and base_mean is not None:
        if all(d in intervals for d in DIMENSIONS):
            result = stats.mean_of_changes([intervals[d] for d in DIMENSIONS])
        else:
            result = "a dimension has no interval"
        row["cells"][MEAN].update(_change_fields(mean - base_mean, result))


def baseline_mean(cells: dict) -> float | None:
    scores = [cells[d]["score"] for d in DIMENSIONS]
    return None if None in scores else sum(scores) / len(scores)


def _change_fields(change: float, result) -> dict:
    if isinstance(result, stats.ChangeInterval) and not all(map(math.isfinite, (result.low, result.high))):
        result = "the interval is not a number (non-finite per-sample values)"
    if isinstance(result, str):
        return {"change": change, "ci": None, "ci_note": result}
    return {
        "change": change,
        "ci": [result.low, result.high],
        "significant": result.excludes_zero,
        "paired_documents": result.n_pairs,
    }


# -- notes -----------------------------------------------------------------------------------------


def partial_reason(task_run: TaskRun) -> str:
    """What a partial dimension score lacks: data parts, scenarios with no items, unscored generations."""
    meta = task_run.config.get("metadata") or {}
    missing = meta.get("missing_components") or []
    empty = [s for s in meta.get("scenarios_run") or [] if task_run.metric(f"score_{s}") is None]
    failures = task_run.metric("scoring_failures")
    reasons = []
    if missing:
        reasons.append(f"missing: {', '.join(map(str, missing))}")
    if empty:
        reasons.append(f"scenarios without items: {', '.join(empty)}")
    if failures:
        reasons.append(f"{failures} generations not scored")
    return "; ".join(reasons) or "parts left out"


def _metadata(run: ModelRun, task: str) -> dict:
    task_run = run.tasks.get(task)
    return (task_run.config.get("metadata") or {}) if task_run else {}


def _who(labels: list[str], runs: list[ModelRun]) -> str:
    return "all models" if len(labels) == len(runs) > 1 else ", ".join(labels)


def notes(runs: list[ModelRun], columns: list[Column]) -> list[str]:
    """Footnotes: partial scores, subsamples, too little data, values that were not numbers, toxicity
    scorers, data sources, metric choices.

    A note that holds for several models is written once, naming them.
    """
    grouped: dict[str, list[str]] = {}
    for d in DIMENSIONS:
        for run in runs:
            task_run = run.tasks.get(f"trust_{d}")
            if task_run and task_run.metric("partial"):
                note = f"{SHORT_NAMES[d]}: partial score ({partial_reason(task_run)}); not comparable to a full one"
                grouped.setdefault(note, []).append(run.label)
    for run in runs:
        scorer = _metadata(run, "trust_toxicity").get("toxicity_scorer_used")
        if scorer:
            note = f"Toxicity scored by {scorer.get('name')} {scorer.get('version', '')}".strip()
            grouped.setdefault(note, []).append(run.label)
    shown = [(c.title, c.key if c.dimension is None else c.tasks[0], c.metric) for c in columns]
    for note, labels in coverage_notes(runs, shown).items():
        grouped.setdefault(note, []).extend(labels)
    out = [f"{note} ({_who(labels, runs)})." for note, labels in grouped.items()]
    out += [f"{line}; shown as missing ({run.label})." for run in runs for line in run.nonfinite]
    for d in DIMENSIONS:
        sources = set()
        for run in runs:
            meta = _metadata(run, f"trust_{d}")
            if "data_source" in meta:
                caveat = " (not comparable to the paper)" if meta.get("comparable_to_paper") is False else ""
                sources.add(meta["data_source"] + caveat)
        if sources:
            out.append(f"{SHORT_NAMES[d]} data: {', '.join(sorted(sources))}.")
    for column in columns:
        if column.dimension is None:
            tasks = "" if column.tasks == [column.key] else f" (pooled over its {len(column.tasks)} subtasks)"
            out.append(
                f"{column.key}: its first metric, {column.metric}"
                + (", x100" if column.scale != 1 else "")
                + f"; the interval is of the mean per-sample {column.metric}{tasks}."
            )
    return out
