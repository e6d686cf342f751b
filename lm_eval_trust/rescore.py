"""`lm-eval-trust rescore`: recompute trust scores from lm-eval sample logs, without a model.

Every metric is recomputed from the raw responses (`resps`), not from the logged items, through the
same `Dimension.score` steps a run takes (batch scorer such as the toxicity classifier, one item
per document, the dimension's aggregate), with the headline metrics the run's task config declares. Use it
after a scoring fix, or with `--metadata` to change a scoring option (toxicity scorer, classifier,
scoring formula). When options change, the dimension's documents are rebuilt from the data with the
new options (options such as `stereotype_classifier` are stored in each document) and checked to
carry the same prompts as the logged ones; a change that alters the prompts needs a new run.

Output: a results JSON and sample logs in lm-eval's layout (the same subfolders under `--output`),
which `lm-eval-trust report` reads like any run's.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from lm_eval_trust.data import DataError, DataRoot, json_object, read_jsonl
from lm_eval_trust.dimension import (
    DIGEST,
    Dimension,
    TaskConfigError,
    coverage,
    document_row,
    documents_identity,
    redacted_row,
)
from lm_eval_trust.output_folder import unusable_output
from lm_eval_trust.report.runs import ResultsError, find_files, read_results, read_samples
from lm_eval_trust.subsample import DOCS_PER_SCENARIO, SEED, run_documents

# Options that decide which documents exist or how many generations each got: not changeable here.
RUN_OPTIONS = (
    "scenarios",
    "n_samples",
    "scenario_n_samples",
    "scenario_generation_kwargs",
    "seeds",
    DOCS_PER_SCENARIO,
    SEED,
)
SAMPLES_RE = re.compile(r"^samples_(.+)_([^_]+)\.jsonl$")
GROUP = "trust"
# Headline metrics of runs whose task config has no metric_list.
DEFAULT_HEADLINE = ("score", "refusal_rate", "partial")


class RescoreError(ValueError):
    """Bad input to rescore; the message names the file or option and the fix."""


@dataclass
class SamplesFile:
    path: Path
    task: str
    results: Path
    named: bool  # given on the command line (not found in a folder)


def find_samples(paths: Sequence[Path]) -> list[SamplesFile]:
    """Sample logs named or found under folders, each with the results JSON of its run beside it."""
    named = {Path(p) for p in paths if Path(p).is_file()}
    files = find_files(paths, "samples_*.jsonl", "evaluate with --log_samples")
    return [_pair_with_results(f, named=f in named) for f in files]


def _pair_with_results(path: Path, named: bool) -> SamplesFile:
    """`samples_<task>_<date>.jsonl` belongs to `results_<date>.json` in the same folder."""
    if not SAMPLES_RE.match(path.name):
        raise RescoreError(f"{path}: not an lm-eval sample log (samples_<task>_<date>.jsonl)")
    for results in sorted(path.parent.glob("results_*.json")):
        date = results.name[len("results_") : -len(".json")]
        suffix = f"_{date}.jsonl"
        if path.name.endswith(suffix):
            return SamplesFile(path, path.name[len("samples_") : -len(suffix)], results, named)
    raise RescoreError(
        f"{path}: no results_<date>.json of the same run beside it; rescore needs that file (task "
        "configs and options), so keep it with its sample logs"
    )


def dimension_of(config: dict, samples: SamplesFile) -> Dimension:
    """The task's dimension with its headline metrics, or an error saying it is not a trust task."""
    module = (config.get("metadata") or {}).get("dimension")
    if not module:
        raise RescoreError(
            f"{samples.path}: {samples.task} is not a trust task (its config in {samples.results.name} has "
            "no metadata.dimension); rescore recomputes trust tasks only"
        )
    headline = [m["metric"] for m in config.get("metric_list") or []] or list(DEFAULT_HEADLINE)
    return Dimension(module, headline, samples.task)


def read_log(path: Path) -> list[dict]:
    """A trust task's sample log; a line that is not whole JSON (a copy cut mid-line) is named."""
    fix = "the log was cut or damaged: copy it again from the run's output folder"
    try:
        lines = read_jsonl(path, ("doc",), RescoreError, fix)
    except OSError as err:
        raise RescoreError(f"{path}: unreadable sample log ({err})") from err
    for number, line in enumerate(lines, 1):
        if not isinstance(line["doc"], dict):
            raise RescoreError(
                f"{path}: record {number} is not an lm-eval sample line (`doc` is not an object)"
            )
    return lines


def expected_documents(metadata: dict, n_samples: dict) -> tuple[int | None, str]:
    """How many documents the run scored, and where the results file says so."""
    for key in ("comparability", "coverage"):
        count = (metadata.get(key) or {}).get("documents")
        if isinstance(count, int):
            return count, f"configs.<task>.metadata.{key}.documents"
    count = n_samples.get("effective")
    return (count, "n-samples.<task>.effective") if isinstance(count, int) else (None, "")


def check_log(samples: SamplesFile, lines: list[dict], metadata: dict, n_samples: dict, prefix: str) -> None:
    """Refuse a log that is not the run's whole log: lines missing, repeated, or of another task.

    A log cut at a line end still parses; scored as it is, it would give a number for a part of
    the run with nothing said, so it is refused with the count of missing lines.
    """
    path, task = samples.path, samples.task
    run_scenarios = metadata.get("scenarios_run")
    seen: dict = {}
    for number, line in enumerate(lines, 1):
        doc = line["doc"]
        scenario = doc.get("scenario")
        if (
            not isinstance(scenario, str)
            or not scenario.startswith(prefix)
            or (run_scenarios is not None and scenario not in run_scenarios)
        ):
            raise RescoreError(
                f"{path}: line {number} holds a document of scenario {scenario!r}, which {task}'s run did not "
                f"run; it is a line of another task's log: remove it, or rescore the log {task}'s run wrote"
            )
        key = doc.get("doc_index", line.get("doc_id"))
        if key in seen:
            raise RescoreError(
                f"{path}: lines {seen[key]} and {number} log the same document (doc_index {key}); a line was "
                "duplicated: keep one of them, or copy the log again from the run's output folder"
            )
        seen[key] = number
    expected, source = expected_documents(metadata, n_samples)
    if expected is not None and len(lines) != expected:
        missing = expected - len(lines)
        what = f"{missing} lines are missing" if missing > 0 else f"{-missing} lines too many"
        raise RescoreError(
            f"{path}: {len(lines)} lines, but {samples.results.name} says the run scored {expected} documents "
            f"({source}): {what}. Rescore the whole log the run wrote (copy it again), or run the "
            "evaluation again with --log_samples"
        )
    recorded = (metadata.get("comparability") or {}).get("documents_sha256")
    if recorded and documents_identity([line["doc"] for line in lines])["documents_sha256"] != recorded:
        raise RescoreError(
            f"{path}: the logged documents are not the ones {samples.results.name} says the run scored "
            "(comparability.documents_sha256 differs); rescore the log written by that run"
        )


def rebuilt_docs(
    dimension: Dimension, options: dict, logged: list[dict], task: str
) -> tuple[list[dict], dict, int]:
    """The logged documents as the new options build them, what `load` records, and how many
    documents the run's scenarios have in the full data.

    Documents are matched by `doc_index` (the interleaved order of the run's scenarios); a rebuilt
    document whose prompt differs from the logged one means the options change the prompts.
    """
    try:
        loaded = dimension.module.load(DataRoot(options.get("data_dir")), options)
        scenarios = options.get("scenarios_run") or loaded.default_scenarios
        docs, _ = run_documents(loaded.docs, scenarios, options, task, dimension.module.SCENARIO_PREFIX)
    except (DataError, TaskConfigError) as err:
        raise RescoreError(f"{task}: rebuilding documents with the new options failed: {err}") from err
    redact = loaded.redact if options.get("redact_pii") else None
    out = []
    for doc in logged:
        index = doc.get("doc_index")
        if not isinstance(index, int) or index >= len(docs):
            raise RescoreError(f"{task}: logged doc_index {index!r} is not among the rebuilt documents")
        new, _ = document_row(docs[index], index)
        if redact:
            new = redacted_row(new, redact)
        if new[DIGEST] != doc.get(DIGEST) or new.get("scenario") != doc.get("scenario"):
            raise RescoreError(
                f"{task}: with the new --metadata, document {index} has a different prompt than the one the "
                "model answered; these options need a new evaluation run, not a rescore"
            )
        out.append(new)
    total = sum(1 for d in loaded.docs if d["scenario"] in scenarios)
    return out, {k: v for k, v in loaded.info.items() if k != "warnings"}, total


def rescore_task(dimension: Dimension, samples: list[dict], metadata: dict, overrides: dict, task: str):
    """New headline metrics, sample log lines and task metadata for one trust task."""
    options = {**metadata, **overrides}
    docs = [s["doc"] for s in samples]
    info: dict = {}
    total = (metadata.get("coverage") or {}).get("documents_total")
    if overrides:
        docs, info, total = rebuilt_docs(dimension, options, docs, task)
    scoring_info = getattr(dimension.module, "scoring_info", None)
    if scoring_info:  # what scores the answers now, which may differ from what the run recorded
        info.update(scoring_info(options))
    resps = [list(s["resps"][0]) if s.get("resps") else [] for s in samples]
    scenarios = options.get("scenarios_run") or sorted({d["scenario"] for d in docs})
    filtered, items, scores = dimension.score(docs, resps, scenarios, options)
    new_meta = {**options, **info, "breakdown": scores.breakdown}
    if scores.details is not None:
        new_meta["details"] = scores.details
    new_meta["coverage"] = coverage(items, scenarios, total, scores)
    if "comparability" in metadata:
        new_meta["comparability"] = {**metadata["comparability"], **documents_identity(docs)}
    names = dimension.headline
    lines = []
    for sample, doc, gens, item in zip(samples, docs, filtered, items, strict=True):
        line = {k: v for k, v in sample.items() if k not in (sample.get("metrics") or [])}
        line.update({"doc": doc, "filtered_resps": [gens], "metrics": names})
        line.update({n: item if n == "score" else None for n in names})
        lines.append(line)
    return scores.headline, lines, new_meta


def task_results(old: dict, metrics: dict, n_docs: int) -> dict:
    """lm-eval's per-task results layout: `<metric>,none` with `<metric>_stderr,none` beside it."""
    out = {k: old[k] for k in ("name", "alias") if k in old}
    out["sample_len"] = n_docs
    for name, value in metrics.items():
        out[f"{name},none"] = value
        out[f"{name}_stderr,none"] = "N/A"
    return out


def update_group(data: dict) -> None:
    """The `trust` group: the mean of its members' scores and partial flags (as lm-eval aggregates it)."""
    members = (data.get("group_subtasks") or {}).get(GROUP)
    if GROUP not in data["results"] or not members:
        return
    for metric in ("score", "partial"):
        values = [data["results"].get(m, {}).get(f"{metric},none") for m in members]
        ok = all(isinstance(v, int | float) for v in values)
        data["results"][GROUP][f"{metric},none"] = sum(values) / len(values) if ok else None


def overlapping_input(paths: Sequence[Path], out_dir: Path) -> str | None:
    """Rescored files written among a run's own would be read back as a second run of the same tasks."""
    out = out_dir.resolve()
    for given in paths:
        if given.is_dir():  # found below it later, rescored logs would read as a second run
            inside = given.resolve() == out or given.resolve() in out.parents
        else:  # a named log: only its own folder mixes
            inside = given.is_file() and given.parent.resolve() == out
        if inside:
            return (
                f"--output {out_dir} lies in the input folder {given if given.is_dir() else given.parent}, so "
                "the rescored logs would mix with the run's own; give a new folder outside the inputs"
            )
    return None


def rescore(paths: Sequence[Path], out_dir: Path, overrides: dict | None = None) -> list[Path]:
    """Rescore every trust sample log under `paths` into `out_dir`; returns the new results files."""
    overrides = dict(overrides or {})
    fixed = sorted(k for k in overrides if k in RUN_OPTIONS)
    if fixed:
        raise RescoreError(
            f"--metadata {fixed} change which documents or generations exist; run the evaluation again instead"
        )
    by_run: dict[Path, list[SamplesFile]] = {}
    for samples in find_samples(paths):
        by_run.setdefault(samples.results, []).append(samples)
    root = Path(os.path.commonpath([p.parent.resolve() for p in by_run]))
    date = datetime.now().isoformat().replace(":", "-")
    written = []
    for results_path, files in by_run.items():
        data = read_results(results_path)
        target = out_dir / results_path.parent.resolve().relative_to(root)
        target.mkdir(parents=True, exist_ok=True)
        new = copy.deepcopy(data)
        for samples in files:
            config = (data.get("configs") or {}).get(samples.task)
            if config is None:
                raise RescoreError(f"{samples.path}: task {samples.task} is not in {results_path}")
            if not (config.get("metadata") or {}).get("dimension") and not samples.named:
                lines = read_samples(samples.path)
                print(f"rescore: {samples.path.name}: not a trust task, copied unchanged", file=sys.stderr)
            else:
                dimension = dimension_of(config, samples)
                lines = read_log(samples.path)
                n_samples = (data.get("n-samples") or {}).get(samples.task) or {}
                check_log(samples, lines, config["metadata"], n_samples, dimension.module.SCENARIO_PREFIX)
                metrics, lines, metadata = rescore_task(
                    dimension, lines, config["metadata"], overrides, samples.task
                )
                metadata["rescored"] = {"from": str(samples.path.resolve()), "changed_options": overrides}
                new["configs"][samples.task]["metadata"] = metadata
                new["results"][samples.task] = task_results(
                    data["results"].get(samples.task, {}), metrics, len(lines)
                )
            out = target / f"samples_{samples.task}_{date}.jsonl"
            with open(out, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(line, default=str) + "\n" for line in lines)
        update_group(new)
        new["date"] = time.time()
        path = target / f"results_{date}.json"
        path.write_text(json.dumps(new, indent=2, default=str), encoding="utf-8")
        written.append(path)
    return written


def rescore_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="lm-eval-trust rescore",
        description="Recompute trust scores from lm-eval sample logs (--log_samples), without a model.",
        epilog="Writes a results JSON and sample logs the report reads (lm-eval's layout).",
    )
    parser.add_argument(
        "samples", nargs="+", type=Path, help="samples_<task>_<date>.jsonl files, or folders holding them"
    )
    parser.add_argument("--output", "-o", type=Path, required=True, help="folder for the new results")
    parser.add_argument(
        "--metadata",
        type=json_object,
        default={},
        help='scoring options to change, as JSON, e.g. \'{"toxicity_scorer": "detoxify"}\' or '
        '\'{"stereotype_classifier": "upstream"}\' (needs the data root, as a run does)',
    )
    args = parser.parse_args(argv)
    reason = unusable_output(args.output, "--output", folder=True) or overlapping_input(
        args.samples, args.output
    )
    if reason:
        print(f"lm-eval-trust rescore: error: {reason}", file=sys.stderr)
        return 2
    from lm_eval_trust.scoring.toxicity import ScorerError

    try:
        written = rescore(args.samples, args.output, args.metadata)
    except (RescoreError, ResultsError, ScorerError, DataError) as err:
        print(f"lm-eval-trust rescore: error: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0
