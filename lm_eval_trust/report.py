"""`lm-eval-trust report`: how trust changed under compression, against the dense baseline.

Reads lm-eval results JSON files (and the sample logs beside them), one model per fingerprint, and
writes a Markdown (and optionally HTML) report with the eight dimension scores, their mean, any
other task's main metric, refusal rates, the change against the baseline with a paired bootstrap
95% interval recomputed from the per-sample records, two PNG figures, and the DecodingTrust
leaderboard's CSV/JSON.
"""

from __future__ import annotations

import argparse
import csv
import html
import importlib
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lm_eval_trust import stats

# DecodingTrust's order (spec section 1.1 and the leaderboard).
DIMENSIONS = ("toxicity", "stereotype", "advglue", "ood", "adv_demo", "privacy", "ethics", "fairness")
SHORT_NAMES = {
    "toxicity": "Toxicity",
    "stereotype": "Stereotype",
    "advglue": "AdvGLUE++",
    "ood": "OOD",
    "adv_demo": "Adv. demo",
    "privacy": "Privacy",
    "ethics": "Ethics",
    "fairness": "Fairness",
}
# github.com/DecodingTrust/decodingtrust.github.io, leaderboard/static/csv/leaderboard.csv (header).
LEADERBOARD_COLUMNS = {
    "toxicity": "Toxicity",
    "stereotype": "Stereotype Bias",
    "advglue": "Adversarial Robustness",
    "ood": "Out-of-Distribution Robustness",
    "adv_demo": "Robustness to Adversarial Demonstrations",
    "privacy": "Privacy",
    "ethics": "Machine Ethics",
    "fairness": "Fairness",
}
FORMATS = ("markdown", "html", "leaderboard")
QUANTIZERS = ("gptq", "awq")
PRUNERS = ("magnitude", "sparsegpt", "wanda")
# A checkpoint with at least this share of zero weights counts as pruned even without compression metadata.
PRUNED_SPARSITY = 0.05
DENSE_BITS = 16
DATE_RE = re.compile(r"^results_(.+)\.json$")
MEAN = "mean"


class ReportError(ValueError):
    """Bad input to the report; the message names the file or flag and the fix."""


@dataclass
class TaskRun:
    """One task's results from one results file, and its sample log if it was written."""

    results: dict
    config: dict
    samples: Path | None
    source: Path

    def metric(self, name: str):
        return self.results.get(f"{name},none")


@dataclass
class ModelRun:
    """Everything read for one model (one fingerprint), merged over its results files by task."""

    key: str
    name: str
    config: dict
    tasks: dict[str, TaskRun] = field(default_factory=dict)
    sources: list[Path] = field(default_factory=list)
    label: str = ""

    @property
    def compression(self) -> dict:
        return self.config.get("compression") or {}

    @property
    def arguments(self) -> dict:
        return self.compression.get("arguments") or {}

    @property
    def method(self) -> str:
        return self.compression.get("method") or "none"

    @property
    def measured_sparsity(self) -> float:
        return float((self.config.get("weights_measured") or {}).get("sparsity") or 0.0)

    @property
    def is_dense(self) -> bool:
        fmt = (self.config.get("weights_measured") or {}).get("checkpoint_format")
        return self.method == "none" and self.measured_sparsity < PRUNED_SPARSITY and fmt not in QUANTIZERS

    @property
    def bits(self) -> int | None:
        return self.arguments.get("bits") if self.method in QUANTIZERS else None

    @property
    def pruning(self) -> str | None:
        """`2:4 50%`, `unstructured 50%`: the pruning setting, also for checkpoints pruned elsewhere."""
        if self.method in PRUNERS:
            structure = self.arguments.get("structure") or "unstructured"
            sparsity = self.arguments.get("sparsity", self.compression.get("sparsity"))
            return f"{structure} {_percent(sparsity)}"
        if self.method == "none" and self.measured_sparsity >= PRUNED_SPARSITY:
            return f"{_percent(self.measured_sparsity)} measured"
        return None

    @property
    def compression_name(self) -> str:
        """`dense`, `gptq 4-bit g64`, `wanda 2:4 50%`: what the report calls the setting."""
        if self.method in QUANTIZERS:
            return f"{self.method} {self.bits}-bit g{self.arguments.get('group_size')}"
        if self.method in PRUNERS:
            return f"{self.method} {self.pruning}"
        if self.pruning:
            return f"pruned {self.pruning}"
        fmt = (self.config.get("weights_measured") or {}).get("checkpoint_format")
        return f"{fmt} checkpoint" if fmt in QUANTIZERS else "dense"

    @property
    def leaderboard_name(self) -> str:
        """The leaderboard's `model@setting` form, e.g. `smollm2@gptq_4bit_64g`, `smollm2@wanda_0.5_2to4`."""
        if self.method in QUANTIZERS:
            return f"{self.name}@{self.method}_{self.bits}bit_{self.arguments.get('group_size')}g"
        if self.method in PRUNERS:
            structure = (self.arguments.get("structure") or "unstructured").replace(":", "to")
            return f"{self.name}@{self.method}_{self.arguments.get('sparsity')}_{structure}"
        return self.name


# -- reading ---------------------------------------------------------------------------------------


def find_results(paths: Sequence[Path]) -> list[Path]:
    """Results files named on the command line, and every `results_*.json` under named folders."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(path.rglob("results_*.json"))
            if not files:
                raise ReportError(
                    f"{path}: no results_*.json below this folder; pass lm-eval's --output_path"
                )
            found += files
        elif path.is_file():
            found.append(path)
        else:
            raise ReportError(f"{path}: no such file or folder")
    return found


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ReportError(f"{path}: not readable as JSON ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ReportError(f"{path}: not an lm-eval results file (no `results` object)")
    return data


def _date_of(path: Path, data: dict) -> str:
    match = DATE_RE.match(path.name)
    return match.group(1) if match else str(data.get("date", ""))


def model_name(config: dict) -> str:
    """The model's short name: its alias, else the last part of `pretrained`."""
    args = config.get("model_args") or {}
    if isinstance(args, str):
        args = dict(kv.split("=", 1) for kv in args.split(",") if "=" in kv)
    name = config.get("model_alias") or args.get("pretrained") or config.get("model") or "model"
    return Path(str(name).rstrip("/")).name


def load_runs(paths: Sequence[Path]) -> list[ModelRun]:
    """One ModelRun per model fingerprint; a task found in several files is taken from the newest."""
    dated = []
    for path in find_results(paths):
        data = _read_json(path)
        dated.append((_date_of(path, data), path, data))
    runs: dict[str, ModelRun] = {}
    for date, path, data in sorted(dated, key=lambda t: t[0]):
        config = data.get("config") or {}
        key = config.get("model_fingerprint") or json.dumps(
            [config.get("model"), config.get("model_args")], sort_keys=True, default=str
        )
        run = runs.setdefault(key, ModelRun(key, model_name(config), config))
        run.config = config
        run.sources.append(path)
        for task, results in data["results"].items():
            samples = path.parent / f"samples_{task}_{date}.jsonl"
            run.tasks[task] = TaskRun(
                results=results,
                config=(data.get("configs") or {}).get(task, {}),
                samples=samples if samples.is_file() else None,
                source=path,
            )
        for group, members in (data.get("group_subtasks") or {}).items():
            run.tasks.setdefault(group, TaskRun({}, {}, None, path)).config.setdefault("members", members)
    ordered = sorted(
        runs.values(),
        key=lambda r: (not r.is_dense, r.name, r.pruning is not None, -(r.bits or 0), r.compression_name),
    )
    _assign_labels(ordered)
    return ordered


def _assign_labels(runs: list[ModelRun]) -> None:
    """Compression name alone when all runs share a model; `name (setting)` otherwise; unique."""
    one_model = len({r.name for r in runs}) == 1
    seen: dict[str, int] = {}
    for run in runs:
        label = run.compression_name if one_model else f"{run.name} ({run.compression_name})"
        seen[label] = seen.get(label, 0) + 1
        run.label = label if seen[label] == 1 else f"{label} #{seen[label]}"


def choose_baseline(runs: list[ModelRun], baseline: str | None) -> ModelRun:
    """The named run (label, model name, setting or a path holding its results), else the one dense run."""
    if baseline is None:
        dense = [r for r in runs if r.is_dense]
        if len(dense) == 1:
            return dense[0]
        if not dense:
            listed = ", ".join(r.label for r in runs)
            raise ReportError(
                f"no dense baseline among the results ({listed}): add the dense model's results or name "
                "one with --baseline"
            )
        listed = "; ".join(f"{r.label}: {r.sources[0]}" for r in dense)
        raise ReportError(f"several dense runs ({listed}); pick one with --baseline NAME_OR_PATH")
    target = Path(baseline).resolve() if Path(baseline).exists() else None
    matches = [
        r
        for r in runs
        if baseline in (r.label, r.name, r.compression_name)
        or (target and any(target == s.resolve() or target in s.resolve().parents for s in r.sources))
    ]
    if len(matches) != 1:
        listed = ", ".join(r.label for r in runs)
        what = "matches several runs" if matches else "matches no run"
        raise ReportError(f"--baseline {baseline!r} {what}; the runs are: {listed}")
    return matches[0]


# -- per-sample records and bootstrap --------------------------------------------------------------


def read_samples(path: Path) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, json.JSONDecodeError) as err:
        raise ReportError(f"{path}: unreadable sample log ({err})") from err


def _doc_of(sample: dict) -> dict:
    doc = sample.get("doc")
    return doc if isinstance(doc, dict) else {}


def _pair_key(task: str, sample: dict) -> tuple:
    """Pairs documents across models: the task, lm-eval's doc id and the hash of the doc itself."""
    doc_id = sample.get("doc_id", _doc_of(sample).get("doc_index"))
    return task, doc_id, sample.get("doc_hash")


@dataclass
class Column:
    """A table column: one trust dimension, or another task's main metric."""

    key: str
    title: str
    tasks: list[str]
    metric: str = "score"
    scale: float = 1.0
    dimension: str | None = None


def _records(run: ModelRun, column: Column) -> dict[tuple, tuple] | str:
    """{pair key: (item, stratum)} from the sample logs, or why there are none."""
    records = {}
    for task in column.tasks:
        task_run = run.tasks.get(task)
        if task_run is None or task_run.samples is None:
            return "no sample logs"
        for sample in read_samples(task_run.samples):
            item = sample.get(column.metric)
            if column.dimension:
                stratum = (item or {}).get("scenario") or _doc_of(sample).get("scenario")
            else:
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


# -- the comparison --------------------------------------------------------------------------------


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
    """Score, refusal rate and partial flag of one model on one column (None when not run)."""
    task_run = run.tasks.get(column.key if column.dimension is None else column.tasks[0])
    value = task_run.metric(column.metric) if task_run else None
    if not isinstance(value, int | float):
        return {"score": None}
    result = {"score": column.scale * value}
    if column.dimension:
        result["refusal_rate"] = task_run.metric("refusal_rate")
        result["partial"] = bool(task_run.metric("partial"))
        result["missing_components"] = (task_run.config.get("metadata") or {}).get("missing_components")
    return result


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
    if isinstance(result, str):
        return {"change": change, "ci": None, "ci_note": result}
    return {
        "change": change,
        "ci": [result.low, result.high],
        "significant": result.excludes_zero,
        "paired_documents": result.n_pairs,
    }


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
    """Footnotes: partial scores and what they miss, toxicity scorers, data sources, metric choices.

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
    out = [f"{note} ({_who(labels, runs)})." for note, labels in grouped.items()]
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


# -- writing ---------------------------------------------------------------------------------------


def _percent(value) -> str:
    return "?" if value is None else f"{100 * float(value):.0f}%"


def _num(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def score_text(data: dict) -> str:
    text = _num(data.get("score"))
    if data.get("refusal_rate") is not None:
        text += f" ({_num(data['refusal_rate'])})"
    if data.get("partial"):
        text += " ᵖ"
    return text


def change_text(data: dict) -> str:
    if data.get("change") is None:
        return "–"
    change = f"{data['change']:+.1f}"
    if data.get("ci") is None:
        return f"{change} ({data['ci_note']})"
    low, high = data["ci"]
    return (
        f"**{change}** [{low:+.1f}, {high:+.1f}] \\*"
        if data["significant"]
        else f"{change} [{low:+.1f}, {high:+.1f}]"
    )


def mean_text(data: dict) -> str:
    if data["score"] is not None:
        return _num(data["score"])
    if data["overall_available"] is None:
        return "–"
    return f"– ({_num(data['overall_available'])} over {data['n_dimensions']})"


def tables(comparison: dict) -> tuple[list[str], list[list[str]], list[list[str]]]:
    """Header, score rows and change rows, as text cells (shared by Markdown and HTML)."""
    columns = comparison["columns"]
    header = ["Model", "Compression"] + [c["title"] for c in columns[: len(DIMENSIONS)]]
    header += ["Mean (8)"] + [c["title"] for c in columns[len(DIMENSIONS) :]]
    scores, changes = [], []
    for row in comparison["rows"]:
        cells = row["cells"]
        keys = [c["key"] for c in columns]
        order = keys[: len(DIMENSIONS)] + [MEAN] + keys[len(DIMENSIONS) :]
        name = row["model"] + (" (baseline)" if row["is_baseline"] else "")
        scores.append(
            [name, row["compression"]]
            + [mean_text(cells[k]) if k == MEAN else score_text(cells[k]) for k in order]
        )
        if not row["is_baseline"]:
            changes.append([row["model"], row["compression"]] + [change_text(cells[k]) for k in order])
    return header, scores, changes


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


INTRO = (
    "Scores are DecodingTrust's 0-100 (higher is more trustworthy); the refusal rate (%) is in "
    "parentheses; ᵖ marks a partial score. Mean (8) is the unweighted mean of the eight dimension "
    "scores, `–` when one is missing (the mean over the dimensions present, `overall_available`, is "
    "given beside it)."
)
CHANGE_INTRO = (
    "Change = model - baseline, with the 95% paired bootstrap interval ({iterations} replicates, seed "
    "{seed}; documents resampled within each scenario, the dimension's own score formula recomputed). "
    "**Bold** with \\* = the interval excludes zero."
)


def write_markdown(comparison: dict, out_dir: Path, figures: list[str]) -> Path:
    header, scores, changes = tables(comparison)
    parts = [
        "# Trust under compression",
        f"Baseline: **{comparison['baseline']}**.",
        "## Scores",
        INTRO,
        markdown_table(header, scores),
        "## Change against the baseline",
        CHANGE_INTRO.format(**comparison["bootstrap"]),
        markdown_table(header, changes) if changes else "Only the baseline was given.",
        "## Notes",
        "\n".join(f"{i}. {n}" for i, n in enumerate(comparison["notes"], 1)) or "None.",
        "## Figures",
        *[f"![{name}]({name})" for name in figures],
    ]
    path = out_dir / "report.md"
    path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    return path


def html_table(header: list[str], rows: list[list[str]]) -> str:
    def text(value: str) -> str:
        value = html.escape(value.replace("\\*", "*"))
        return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", value)

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{text(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_html(comparison: dict, out_dir: Path, figures: list[str]) -> Path:
    header, scores, changes = tables(comparison)
    notes_html = "".join(f"<li>{html.escape(n)}</li>" for n in comparison["notes"])
    body = [
        "<h1>Trust under compression</h1>",
        f"<p>Baseline: <b>{html.escape(comparison['baseline'])}</b>.</p>",
        f"<h2>Scores</h2><p>{html.escape(INTRO)}</p>",
        html_table(header, scores),
        f"<h2>Change against the baseline</h2><p>{html.escape(CHANGE_INTRO.format(**comparison['bootstrap']))}</p>",
        html_table(header, changes) if changes else "<p>Only the baseline was given.</p>",
        f"<h2>Notes</h2><ol>{notes_html}</ol>",
        "<h2>Figures</h2>",
        *[f'<p><img src="{html.escape(name)}" alt="{html.escape(name)}"></p>' for name in figures],
    ]
    style = "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:3px 6px;text-align:right}"
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>Trust under compression</title><style>{style}</style></head><body>{''.join(body)}</body></html>"
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def leaderboard_rows(comparison: dict) -> list[dict]:
    """A row per model in the DecodingTrust leaderboard's columns (2 decimals), plus `Compression`."""
    rows = []
    for row in comparison["rows"]:
        out = {"Model": row["leaderboard_name"]}
        for d in DIMENSIONS:
            score = row["cells"][d]["score"]
            out[LEADERBOARD_COLUMNS[d]] = None if score is None else round(score, 2)
        mean = row["cells"][MEAN]["score"]
        out["Average"] = None if mean is None else round(mean, 2)
        out["Compression"] = row["compression"]
        rows.append(out)
    return rows


def write_leaderboard(comparison: dict, out_dir: Path) -> Path:
    rows = leaderboard_rows(comparison)
    path = out_dir / "leaderboard.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    (out_dir / "leaderboard.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return path


# -- figures ---------------------------------------------------------------------------------------


def _scores(row: dict) -> list[float]:
    """The eight dimension scores, NaN where missing (so nothing is drawn there, never a zero)."""
    return [math.nan if row["cells"][d]["score"] is None else row["cells"][d]["score"] for d in DIMENSIONS]


def radar_figure(comparison: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    angles = np.linspace(0, 2 * np.pi, len(DIMENSIONS), endpoint=False)
    closed = np.append(angles, angles[0])
    fig, ax = plt.subplots(figsize=(7.5, 6.5), subplot_kw={"projection": "polar"})
    for row in comparison["rows"]:
        values = np.array(_scores(row))
        ring = np.append(values, values[0])
        (line,) = ax.plot(
            closed, ring, marker="o", linewidth=2 if row["is_baseline"] else 1.3, label=row["label"]
        )
        if not np.isnan(values).any():
            ax.fill(closed, ring, color=line.get_color(), alpha=0.08)
    ax.set_xticks(angles)
    ax.set_xticklabels([SHORT_NAMES[d] for d in DIMENSIONS])
    ax.set_ylim(0, 100)
    ax.set_yticks([20, 40, 60, 80, 100])
    ax.set_yticklabels(["20", "40", "60", "80", "100"], fontsize=8)
    ax.set_title("DecodingTrust scores (0-100, higher is more trustworthy)", pad=20)
    ax.legend(loc="upper left", bbox_to_anchor=(1.1, 1.0), fontsize=9, title="model")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def compression_figure(comparison: dict, path: Path) -> Path:
    """Score vs bits for quantization (dense at 16), and per pruning method at its structure, per dimension."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = comparison["rows"]
    base = next(r for r in rows if r["is_baseline"])
    quant = [r for r in rows if r["method"] in QUANTIZERS]
    pruned = [r for r in rows if r["pruning"]]
    kinds = [k for k, members in (("quantization", quant), ("pruning", pruned)) if members] or [
        "quantization"
    ]
    ncols = 2 * len(kinds)
    fig, axes = plt.subplots(4, ncols, figsize=(4.2 * ncols, 13), squeeze=False)
    settings = sorted({r["pruning"] for r in pruned})
    for i, d in enumerate(DIMENSIONS):
        for j, kind in enumerate(kinds):
            ax = axes[i // 2][(i % 2) * len(kinds) + j]
            dense = base["cells"][d]["score"]
            if dense is not None:
                ax.axhline(
                    dense, color="grey", linestyle="--", linewidth=1, label=f"{base['label']} (baseline)"
                )
            if kind == "quantization":
                _draw_quantization(ax, quant, base, d)
            else:
                _draw_pruning(ax, pruned, settings, d)
            if dense is None and all(r["cells"][d]["score"] is None for r in rows):
                ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes, color="grey")
            ax.set_title(f"{SHORT_NAMES[d]} - {kind}", fontsize=10)
            ax.set_ylabel("score (0-100)")
            ax.set_ylim(0, 100)
            ax.grid(alpha=0.3)
    handles = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=min(len(handles), 5), fontsize=9)
    fig.suptitle("Trust score against compression (missing points: dimension not run)")
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _draw_quantization(ax, quant: list[dict], base: dict, dimension: str) -> None:
    dense = base["cells"][dimension]["score"]
    for method in sorted({r["method"] for r in quant}):
        points = sorted((r["bits"], r["cells"][dimension]["score"]) for r in quant if r["method"] == method)
        points = [(b, s) for b, s in points if s is not None]
        if dense is not None:
            points.append((DENSE_BITS, dense))
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=method.upper())
    ax.set_xscale("log", base=2)
    ticks = sorted({r["bits"] for r in quant} | {DENSE_BITS})
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.set_xlim(min(ticks) / 1.3, DENSE_BITS * 1.3)
    ax.set_xlabel("bits per weight (dense = 16)")


def _draw_pruning(ax, pruned: list[dict], settings: list[str], dimension: str) -> None:
    markers = dict(zip(PRUNERS + ("none",), "s^Dv", strict=True))
    methods = sorted({r["method"] for r in pruned})
    for k, method in enumerate(methods):
        offset = 0.12 * (k - (len(methods) - 1) / 2)  # side by side, so equal scores stay visible
        points = [
            (settings.index(r["pruning"]) + offset, r["cells"][dimension]["score"])
            for r in pruned
            if r["method"] == method and r["cells"][dimension]["score"] is not None
        ]
        label = "pruned elsewhere" if method == "none" else method
        if points:
            ax.plot(
                *zip(*points, strict=True),
                linestyle="none",
                marker=markers.get(method, "o"),
                markersize=8,
                label=label,
            )
    ax.set_xticks(range(len(settings)))
    ax.set_xticklabels(settings, fontsize=8)
    ax.set_xlim(-0.6, len(settings) - 0.4)
    ax.set_xlabel("pruning structure (sparsity)")


# -- entry points ----------------------------------------------------------------------------------


def write_report(
    paths: Sequence[Path],
    out_dir: Path,
    baseline: str | None = None,
    formats: Sequence[str] = ("markdown",),
    bootstrap_iters: int = stats.DEFAULT_ITERS,
    seed: int = stats.DEFAULT_SEED,
) -> Path:
    """Write the report files into `out_dir`; returns the main file (report.md, else the first written).

    Always writes `report.json` (every number of the report); `markdown` and `html` also write
    `radar.png` and `compression.png`; `leaderboard` writes `leaderboard.csv` and `leaderboard.json`.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ReportError(f"unknown --format {unknown}; choose from {', '.join(FORMATS)}")
    if bootstrap_iters < 1:
        raise ReportError(f"--bootstrap-iters {bootstrap_iters} must be at least 1")
    runs = load_runs(paths)
    base = choose_baseline(runs, baseline)
    comparison = compare(runs, base, bootstrap_iters, seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(comparison, indent=2), encoding="utf-8")
    written = []
    figures = []
    if "markdown" in formats or "html" in formats:
        figures = [radar_figure(comparison, out_dir / "radar.png").name]
        figures.append(compression_figure(comparison, out_dir / "compression.png").name)
    if "markdown" in formats:
        written.append(write_markdown(comparison, out_dir, figures))
    if "html" in formats:
        written.append(write_html(comparison, out_dir, figures))
    if "leaderboard" in formats:
        written.append(write_leaderboard(comparison, out_dir))
    return written[0] if written else out_dir / "report.json"


def report_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="lm-eval-trust report",
        description="Compare lm-eval results of compressed models against the dense baseline: scores, "
        "changes with paired bootstrap 95%% intervals (needs --log_samples), figures, leaderboard rows.",
    )
    parser.add_argument("results", nargs="+", type=Path, help="results_*.json files or folders holding them")
    parser.add_argument(
        "--output", "-o", type=Path, default=Path("report"), help="output folder (default: report)"
    )
    parser.add_argument(
        "--baseline",
        help="the baseline run: its label, model name, setting (e.g. dense) or a path to its results",
    )
    parser.add_argument(
        "--format",
        nargs="+",
        default=["markdown"],
        choices=FORMATS,
        help="markdown (report.md + PNG figures, default), html, leaderboard (CSV and JSON)",
    )
    parser.add_argument(
        "--bootstrap-iters", type=int, default=stats.DEFAULT_ITERS, help="bootstrap replicates (default 1000)"
    )
    parser.add_argument("--seed", type=int, default=stats.DEFAULT_SEED, help="bootstrap seed (default 0)")
    args = parser.parse_args(argv)
    try:
        path = write_report(
            args.results, args.output, args.baseline, args.format, args.bootstrap_iters, args.seed
        )
    except ReportError as err:
        print(f"lm-eval-trust report: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
