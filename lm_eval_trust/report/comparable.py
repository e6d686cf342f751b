"""Whether a run may be set beside the baseline: same base model, engine, precision, documents,
prompts, sampling, scoring, settings and data.

A change against the baseline is the effect of compression only when both runs answered the same
prompts under the same settings; a dense run at `--limit 2` beside a compressed run at `--limit 8`
differs in its documents, not its weights. Each task both runs hold is compared on its recorded
`comparability` (written by the task), else, for older results files, on what they do record
(scenarios, samples per prompt, documents evaluated, data source, subsample, `--limit`), together
with lm-eval's seeds, `--gen_kwargs` and the dimension's scoring options (toxicity scorer and
version, classifiers, formulas). Any difference refuses the report, naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lm_eval.utils import simple_parse_args_string

from lm_eval_trust.dimension import scoring
from lm_eval_trust.report.runs import ModelRun, ReportError, TaskRun

# lm-eval's `--seed` sets these four (results `config`).
SEEDS = ("random_seed", "numpy_seed", "torch_seed", "fewshot_seed")
# Older results files may not record these; a field unknown on either side is not compared.
MAY_BE_UNKNOWN = ("documents", "data_source", "limit", "prompts_sha256")
# What to change for each field, for the error's last line.
FIXES = {
    "documents": "--limit and docs_per_scenario",
    "documents_sha256": "--limit, docs_per_scenario and subsample_seed",
    "limit": "--limit",
    "prompts_sha256": "--apply_chat_template and --system_instruction (the prompts sent differ)",
    "scenarios_run": "the scenarios option",
    "samples_per_prompt": "n_samples",
    "generation_kwargs": "--gen_kwargs and the generation options",
    "gen_kwargs": "--gen_kwargs",
    "subsample": "docs_per_scenario and subsample_seed",
    "data": "the data mirror (--metadata data_dir / TRUST_DATA_DIR)",
    "data_source": "the data mirror (--metadata data_dir / TRUST_DATA_DIR)",
    "scoring": "scoring options (--metadata toxicity_scorer, stereotype_classifier, ethics_scoring, "
    "fairness_scoring; or `lm-eval-trust rescore` the odd run with the baseline's)",
    "base model": "pretrained= in --model_args",
    "engine": "--model (one engine for every setting)",
    "precision": "dtype= in --model_args (one precision for every setting, e.g. dtype=float32)",
    **{seed: "--seed" for seed in SEEDS},
}
SHOWN = 12


def base_model(run: ModelRun) -> dict:
    """What names a run's base weights: `weights` (a hash, where recorded) and `name` (`pretrained=`).

    A trust-hf compression records the hash of the weights it started from; a dense run is its own
    base. A checkpoint compressed elsewhere (no compression record) has no known base: empty.
    """
    if not (run.compression or run.is_dense):
        return {}
    args = run.config.get("model_args") or {}
    if isinstance(args, str):
        args = simple_parse_args_string(args)
    if run.compression:
        weights = run.compression.get("base_weights_sha256")
    elif "weights_sha256" in run.config:
        weights = run.config["weights_sha256"]
    else:
        weights = f"hub:{run.config['model_path']}" if run.config.get("model_path") else None
    return {"weights": weights, "name": args.get("pretrained")}


def engine(run: ModelRun) -> dict:
    """What computed the answers: lm-eval's model type (and the engine's version, where recorded) and
    the precision the weights compute in (`computes_in`, else the dtype asked for; `auto` is
    unknown). Unknown fields (older results) are left out."""
    config = run.config
    dtype = config.get("computes_in") or config.get("dtype")
    fields = {
        "engine": " ".join(str(v) for v in (config.get("model"), config.get("engine")) if v) or None,
        "precision": str(dtype).removeprefix("torch.") if dtype not in (None, "auto") else None,
    }
    return {k: v for k, v in fields.items() if v}


def _recorded(task_run: TaskRun) -> dict | None:
    return (task_run.config.get("metadata") or {}).get("comparability")


def _fallback(task_run: TaskRun) -> dict:
    """The fields an older results file records (a newer one records them too)."""
    meta = task_run.config.get("metadata") or {}
    fields = {
        "scenarios_run": meta.get("scenarios_run"),
        "samples_per_prompt": meta.get("samples_per_prompt") or {},
        "documents": task_run.n_samples.get("effective"),
        "data_source": meta.get("data_source"),
        "subsample": meta.get("subsample"),
    }
    if fields["documents"] is None:
        fields["limit"] = task_run.run_config.get("limit")
    return fields


def _settings(task_run: TaskRun) -> dict:
    """lm-eval's seeds and `--gen_kwargs`, and the dimension's scoring options (a parser, formula or
    scorer changes the numbers as much as the answers do)."""
    config = task_run.run_config
    return {
        **{s: config.get(s) for s in SEEDS},
        "gen_kwargs": config.get("gen_kwargs") or "",
        "scoring": scoring(task_run.config.get("metadata") or {}),
    }


def task_differences(base: TaskRun, other: TaskRun) -> list[tuple[str, object, object]]:
    """(field, baseline value, other value) for each field the two runs of one task differ in."""
    if _recorded(base) is not None and _recorded(other) is not None:
        # The documents drawn decide, not the options that drew them (older files record both).
        mine, theirs = (
            {k: v for k, v in r.items() if k != "subsample"} for r in (_recorded(base), _recorded(other))
        )
    else:
        mine, theirs = _fallback(base), _fallback(other)
    mine, theirs = {**mine, **_settings(base)}, {**theirs, **_settings(other)}
    out = []
    for key in sorted(set(mine) | set(theirs), key=lambda k: (k not in mine, k)):
        a, b = mine.get(key), theirs.get(key)
        if key in MAY_BE_UNKNOWN and (a is None or b is None):
            continue
        if _canonical(a) != _canonical(b):
            out.append((key, a, b))
    return out


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@dataclass(frozen=True)
class Difference:
    """One field in which a run differs from the baseline, and where each side was read."""

    run: ModelRun
    where: str
    key: str
    baseline_value: object
    value: object
    baseline_source: Path
    source: Path

    def __str__(self) -> str:
        return (
            f"{self.run.label} ({self.source.parent}), {self.where}: {self.key} is {_canonical(self.value)}, "
            f"the baseline's ({self.baseline_source.parent}) is {_canonical(self.baseline_value)}"
        )


def differences(base: ModelRun, other: ModelRun) -> list[Difference]:
    """Every way `other` cannot be compared with `base`."""
    found = []
    mine, theirs = base_model(base), base_model(other)
    if mine and theirs:
        key = "weights" if mine.get("weights") and theirs.get("weights") else "name"
        if mine.get(key) != theirs.get(key):
            found.append(
                Difference(
                    other, "base model", key, mine[key], theirs[key], base.sources[-1], other.sources[-1]
                )
            )
    mine, theirs = engine(base), engine(other)
    for key in sorted(set(mine) & set(theirs)):
        if mine[key] != theirs[key]:
            found.append(
                Difference(other, key, key, mine[key], theirs[key], base.sources[-1], other.sources[-1])
            )
    for task in sorted(set(base.tasks) & set(other.tasks)):
        base_task, other_task = base.tasks[task], other.tasks[task]
        if not (base_task.config and other_task.config):
            continue  # a group: its member tasks are compared
        for key, a, b in task_differences(base_task, other_task):
            found.append(Difference(other, task, key, a, b, base_task.source, other_task.source))
    return found


def check_comparable(runs: list[ModelRun], baseline: ModelRun) -> None:
    """Raise ReportError listing every difference between the baseline and another run."""
    found = [d for run in runs if run is not baseline for d in differences(baseline, run)]
    if not found:
        return
    fixes = sorted({FIXES.get(d.where) or FIXES.get(d.key, d.key) for d in found})
    lines = [str(d) for d in found[:SHOWN]]
    if len(found) > SHOWN:
        lines.append(f"... and {len(found) - SHOWN} more")
    raise ReportError(
        f"runs not comparable with the baseline {baseline.label}:\n  "
        + "\n  ".join(lines)
        + f"\nRun every model with the same {'; '.join(fixes)}, or leave the odd run out of the report."
    )
