"""`lm-eval-trust plan`: what a run of the trust tasks will cost and how precise its scores will be.

No model is loaded. The tasks are built as a run builds them, so the planned documents are the
run's; per dimension and in total it prints documents, generations (documents x samples per prompt
of their scenario), prompt tokens (counted with `--tokenizer`) and the new-token bound (generations x
the scenario's `max_gen_toks`), and the 95% half-width of each score and of a paired change between
two models: the worst case from the formula (each dimension's `worst_case`, see `bounds`), and, given an earlier run's sample logs,
the estimate from resampling its items at the planned sizes (`plan.estimate`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from lm_eval_trust import preflight
from lm_eval_trust.atomic import write_text
from lm_eval_trust.bounds import Bound, Z
from lm_eval_trust.data import DataError, json_object
from lm_eval_trust.dimension import TaskConfigError
from lm_eval_trust.output_folder import unusable_output
from lm_eval_trust.plan.design import (
    DEFAULT_TOKENIZER,
    PlanError,
    PromptCounter,
    TaskDesign,
    design,
    load_tasks,
)
from lm_eval_trust.plan.estimate import (
    DEFAULT_ITERS,
    MAX_ITERS,
    Estimate,
    estimate,
    paired_estimate,
    read_pilot,
    same_run,
)
from lm_eval_trust.report.runs import ResultsError
from lm_eval_trust.stats import DEFAULT_SEED

COUNTS = ("documents", "generations", "prompt_tokens", "prompt_tokens_all_samples", "new_tokens_bound")
WIDTHS = ("worst", "estimated", "paired_worst", "paired_estimated")
TOTAL = "total"


def worst_case(plan: TaskDesign) -> Bound:
    """The dimension's own worst-case bound (its module's `worst_case`) on this design."""
    bound = getattr(plan.dimension.module, "worst_case", None)
    if bound is None:
        return Bound(None, f"no worst-case formula for the dimension {plan.key}")
    if not plan.rows:
        return Bound(None, "no documents")
    return bound(plan)


def _half(sd: float | None) -> float | None:
    return None if sd is None else Z * sd


def dimension_figures(plan: TaskDesign, estimated: Estimate | None, paired: Estimate | None) -> dict:
    """One task's counts, per-scenario figures and half-widths, with the reasons for missing ones."""
    bound = worst_case(plan)
    figures: dict = {k: plan.total(k) for k in COUNTS}
    figures["scenarios"] = {s: d.figures() for s, d in plan.by_scenario.items()}
    figures["sd"] = {
        "worst": bound.sd,
        "paired_worst": None if bound.sd is None else 2 * bound.sd,
        "estimated": estimated.sd if estimated else None,
        "paired_estimated": paired.sd if paired else None,
    }
    figures["half_width"] = {k: _half(v) for k, v in figures["sd"].items()}
    notes = {"worst": bound.note}
    for key, found in (("estimated", estimated), ("paired_estimated", paired)):
        if found is not None:
            notes[key] = "; ".join(filter(None, (found.reason, *found.notes)))
    figures["notes"] = {k: v for k, v in notes.items() if v}
    return figures


def total_figures(dimensions: dict[str, dict]) -> dict:
    """Counts summed; half-widths of the unweighted mean of the dimension scores (the trust score
    when all eight run), whose dimensions draw disjoint documents: sd = sqrt(sum sd_d^2) / D."""
    total: dict = {k: sum(d[k] for d in dimensions.values()) for k in COUNTS}
    sds = {}
    for key in WIDTHS:
        values = [d["sd"][key] for d in dimensions.values()]
        sds[key] = (
            None if any(v is None for v in values) else math.sqrt(sum(v * v for v in values)) / len(values)
        )
    total["sd"] = sds
    total["half_width"] = {k: _half(v) for k, v in sds.items()}
    return total


def make_plan(args: argparse.Namespace, metadata: dict) -> dict:
    """Every figure of the plan, JSON-able."""
    base = read_pilot(args.samples, "--samples") if args.samples else {}
    other = read_pilot(args.other_samples, "--other_samples") if args.other_samples else {}
    for name in sorted(base.keys() & other.keys()):
        why = same_run(base[name], other[name])
        if why:
            raise PlanError(
                f"--samples {base[name].source} and --other_samples {other[name].source} are the same run of "
                f"{name} ({why}); a paired estimate needs two different runs (one per model)"
            )
    names = task_names(args.tasks)
    counter = PromptCounter(args.tokenizer, args.apply_chat_template)  # a bad one fails before the tasks load
    tasks = load_tasks(names, metadata, args.include_path)
    dimensions = {}
    for name, task in tasks.items():
        plan = design(task, args.limit, counter)
        estimated = estimate(plan, base.get(name), args.iters, DEFAULT_SEED) if base else None
        paired = (
            paired_estimate(plan, base.get(name), other.get(name), args.iters, DEFAULT_SEED)
            if other
            else None
        )
        dimensions[name] = dimension_figures(plan, estimated, paired)
    return {
        "design": {
            "tasks": names,
            "limit": args.limit,
            "metadata": metadata,
            "tokenizer": args.tokenizer,
            "apply_chat_template": args.apply_chat_template,
            "samples": [str(p) for p in args.samples or []],
            "other_samples": [str(p) for p in args.other_samples or []],
            "iters": args.iters,
            "level": 0.95,
        },
        "dimensions": dimensions,
        "total": total_figures(dimensions),
    }


def task_names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def argument_problems(args: argparse.Namespace, metadata) -> list[str]:
    """Every unusable argument, named with its value and the fix, found before any work."""
    problems = []
    if not task_names(args.tasks):
        problems.append(
            f"--tasks {args.tasks!r} names no task; give trust tasks or the group, e.g. --tasks trust"
        )
    if args.limit is not None and not math.isfinite(args.limit):
        problems.append(
            f"--limit {args.limit:g} is no number of documents; give a count (e.g. --limit 8), a fraction "
            "below 1 (e.g. --limit 0.1), or drop --limit to plan every document"
        )
    elif args.limit is not None and args.limit <= 0:
        problems.append(f"--limit {args.limit:g} selects no documents; give a count or a fraction below 1")
    if not 2 <= args.iters <= MAX_ITERS:
        problems.append(
            f"--iters {args.iters}: give at least 2 replicates (the spread needs two) and at most "
            f"{MAX_ITERS:,} (default {DEFAULT_ITERS})"
        )
    if args.other_samples and not args.samples:
        problems.append("--other_samples pairs with --samples (the baseline run); give both")
    if args.json:
        problems.append(unusable_output(args.json, "--json", folder=False) or "")
    if task_names(args.tasks):
        try:  # as `run` checks it: an entry matching no scenario would plan the full set
            preflight.check_subsample(metadata, preflight.selected_trust_tasks(task_names(args.tasks)))
        except preflight.PreflightError as err:
            problems.append(str(err))
    return [p for p in problems if p]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render(figures: dict) -> str:
    """A fixed-width table: counts, then the 95% half-widths (score points) of scores and changes."""
    head = (
        "task",
        "docs",
        "generations",
        "prompt tok",
        "x samples",
        "new tok <=",
        "±worst",
        "±est",
        "Δ±worst",
        "Δ±est",
    )
    rows = []
    for name, d in [*figures["dimensions"].items(), (TOTAL, figures["total"])]:
        counts = [f"{d[k]:,}" for k in COUNTS]
        rows.append((name, *counts, *(_number(d["half_width"][k]) for k in WIDTHS)))
    width = [max(len(str(r[i])) for r in (head, *rows)) for i in range(len(head))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, width, strict=True)))
        for r in (head, *rows)
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("")
    lines.append(
        "± columns: 95% half-width in score points (0-100) of the score (±) and of a paired change "
        "between two models (Δ±); worst: from the formula alone; est: resampled from earlier logs. The total's are those of the "
        "unweighted mean of the dimension scores (the trust score when all eight run)."
    )
    for name, d in figures["dimensions"].items():
        for key, note in d["notes"].items():
            lines.append(f"  {name} {key}: {note}")
    return "\n".join(lines)


def plan_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="lm-eval-trust plan",
        description="Size a run of trust tasks without a model: documents, generations, token counts "
        "and the expected 95%% half-width of every score and of a paired change between two models.",
    )
    parser.add_argument(
        "--tasks", required=True, help="trust tasks or the group, comma-separated (e.g. trust)"
    )
    parser.add_argument(
        "--metadata", type=json_object, default={}, help="task options as JSON, exactly as the run gets them"
    )
    parser.add_argument(
        "--limit", type=float, help="documents per task as lm-eval reads it (count, or fraction < 1)"
    )
    parser.add_argument(
        "--samples",
        nargs="+",
        type=Path,
        help="sample logs (or folders) of an earlier run, for estimated widths",
    )
    parser.add_argument(
        "--other_samples",
        nargs="+",
        type=Path,
        help="sample logs of a second model on the same documents as --samples, for paired changes",
    )
    parser.add_argument(
        "--tokenizer",
        default=DEFAULT_TOKENIZER,
        help=f"tokenizer counting prompt tokens (default {DEFAULT_TOKENIZER})",
    )
    parser.add_argument(
        "--apply_chat_template", action="store_true", help="render prompts with the tokenizer's chat template"
    )
    parser.add_argument(
        "--include_path", help="a folder of further task YAMLs, as `run` takes it (its own dimensions' tasks)"
    )
    parser.add_argument("--iters", type=int, default=DEFAULT_ITERS, help="resampling replicates per estimate")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    metadata = args.metadata
    problems = argument_problems(args, metadata)
    if problems:
        print(f"lm-eval-trust plan: error: {'; '.join(problems)}", file=sys.stderr)
        return 2
    try:
        figures = make_plan(args, metadata)
    except (PlanError, TaskConfigError, DataError, ResultsError) as err:
        print(f"lm-eval-trust plan: error: {err}", file=sys.stderr)
        return 2
    print(render(figures))
    if args.json:
        write_text(args.json, json.dumps(figures, indent=2, allow_nan=False))
        print(f"wrote {args.json}")
    return 0
