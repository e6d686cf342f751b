"""How much of a task a score stands on: documents and scenarios scored, subsampling, too little data.

A task records `coverage` (documents scored of the total, scenarios with documents of those run,
and the metrics whose formula had too little data) and `subsample` (documents per scenario and
seed) in its results metadata. Older results files have only lm-eval's `n-samples` (documents
evaluated of the task's documents) and `scenarios_run`; their coverage is read from those.
"""

from __future__ import annotations

from lm_eval_trust.report.runs import ModelRun, TaskRun

KEYS = ("documents", "documents_total", "scenarios", "scenarios_total")


def _metadata(task_run: TaskRun | None) -> dict:
    return (task_run.config.get("metadata") or {}) if task_run else {}


def task_coverage(task_run: TaskRun) -> dict:
    """The task's coverage numbers (a key is None where the results file does not say)."""
    meta = _metadata(task_run)
    recorded = meta.get("coverage")
    if isinstance(recorded, dict):
        return {k: recorded.get(k) for k in KEYS}
    scenarios = meta.get("scenarios_run")
    return {
        "documents": task_run.n_samples.get("effective"),
        "documents_total": task_run.n_samples.get("original"),
        "scenarios": len(scenarios) if scenarios else None,
        "scenarios_total": None,
    }


def coverage(run: ModelRun, tasks: list[str]) -> dict | None:
    """Coverage summed over `tasks` (a column's leaf tasks); None when documents scored are unknown."""
    if not all(t in run.tasks for t in tasks):
        return None
    return add_up([task_coverage(run.tasks[t]) for t in tasks])


def add_up(parts: list[dict | None]) -> dict | None:
    """The sum of coverages, key by key (None where a part does not say); None if none is known."""
    parts = [p for p in parts if p]
    total = {k: None if any(p[k] is None for p in parts) else sum(p[k] for p in parts) for k in KEYS}
    return total if parts and total["documents"] is not None else None


def subsample(task_run: TaskRun | None) -> dict | None:
    """`{"docs_per_scenario": K, "subsample_seed": S}` when the task ran on a subsample, else None."""
    return _metadata(task_run).get("subsample") or None


def insufficient(task_run: TaskRun | None, metric: str) -> str | None:
    """Why `metric` has no value, when the task says its formula had too little data."""
    reasons = (_metadata(task_run).get("coverage") or {}).get("insufficient") or {}
    return reasons.get(metric)


def coverage_text(data: dict | None) -> str:
    """`40/1200 docs, 2/4 scenarios`; a part not recorded is left out."""
    if not data or data.get("documents") is None:
        return "–"
    text = f"{data['documents']}"
    if data.get("documents_total") is not None:
        text += f"/{data['documents_total']}"
    text += " docs"
    if data.get("scenarios") is not None:
        text += f", {data['scenarios']}"
        if data.get("scenarios_total") is not None:
            text += f"/{data['scenarios_total']}"
        text += " scenarios"
    return text


def subsample_text(data: dict) -> str:
    k, seed = data.get("docs_per_scenario"), data.get("subsample_seed")
    if isinstance(k, dict):
        per = "; ".join(f"{n} in {pattern}" for pattern, n in k.items())
        return f"a subsample of each scenario's documents ({per}; seed {seed})"
    return f"a subsample of {k} documents per scenario (seed {seed})"


def coverage_notes(runs: list[ModelRun], shown: list[tuple[str, str, str]]) -> dict[str, list[str]]:
    """{note: models} for the cells with too little data and the tasks run on a subsample.

    `shown` lists each column's (title, task, metric); tasks sharing a subsample get one note.
    """
    notes: dict[str, list[str]] = {}
    for title, task, metric in shown:
        for run in runs:
            reason = insufficient(run.tasks.get(task), metric)
            if reason:
                notes.setdefault(f"{title}: too little data for a score ({reason})", []).append(run.label)
    for run in runs:
        tasks_of: dict[str, list[str]] = {}
        for task, task_run in run.tasks.items():
            if subsample(task_run):
                tasks_of.setdefault(subsample_text(subsample(task_run)), []).append(task)
        for text, tasks in tasks_of.items():
            notes.setdefault(f"{', '.join(sorted(tasks))}: {text}", []).append(run.label)
    return notes
