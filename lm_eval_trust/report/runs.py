"""Reading lm-eval runs: results JSONs and their sample logs -> one `ModelRun` per model.

Also the baseline choice and the names of lm-eval's output files, shared with `rescore`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lm_eval.utils import simple_parse_args_string

from lm_eval_trust.compression import (
    PRUNED_SPARSITY,
    CompressionSpec,
    label,
    leaderboard_name,
    pruning_label,
    quantized_format,
)

DENSE_BITS = 16
# lm-eval names a run's files `results_<date>.json` and `samples_<task>_<date>.jsonl`.
RESULTS_RE = re.compile(r"^results_(.+)\.json$")
# A trust task's sample log carries each document's scored item under this key only.
ITEM_KEY = "score"


class ReportError(ValueError):
    """Bad input to the report; the message names the file or flag and the fix."""


class ResultsError(ReportError):
    """A results file or sample log that cannot be read; the message names the file."""


@dataclass
class TaskRun:
    """One task's results from one results file, and its sample log if it was written."""

    results: dict
    config: dict
    samples: Path | None
    source: Path
    # The results file's `n-samples` entry for the task and its top-level `config` (limit, seeds,
    # gen_kwargs): tasks of one model may come from several files run with different flags.
    n_samples: dict = field(default_factory=dict)
    run_config: dict = field(default_factory=dict)

    def metric(self, name: str):
        """A headline metric from `results`, else a number of the task's `metadata.breakdown`.

        Older results files kept every number (per-scenario scores too) in `results`.
        """
        key = f"{name},none"
        if key in self.results:
            return self.results[key]
        breakdown = (self.config.get("metadata") or {}).get("breakdown") or {}
        return breakdown.get(name)


@dataclass
class ModelRun:
    """Everything read for one model (one fingerprint), merged over its results files by task."""

    key: str
    name: str
    config: dict
    tasks: dict[str, TaskRun] = field(default_factory=dict)
    sources: list[Path] = field(default_factory=list)
    label: str = ""
    # Where a results file held NaN or infinity, read as missing: "file: key is nan".
    nonfinite: list[str] = field(default_factory=list)

    @property
    def compression(self) -> dict:
        return self.config.get("compression") or {}

    @property
    def spec(self) -> CompressionSpec:
        return CompressionSpec.from_record(self.compression)

    @property
    def method(self) -> str:
        return self.spec.compress

    @property
    def checkpoint_format(self) -> str | None:
        return (self.config.get("weights_measured") or {}).get("checkpoint_format")

    @property
    def measured_sparsity(self) -> float:
        return float((self.config.get("weights_measured") or {}).get("sparsity") or 0.0)

    @property
    def is_dense(self) -> bool:
        return (
            self.method == "none"
            and self.measured_sparsity < PRUNED_SPARSITY
            and not quantized_format(self.checkpoint_format)
        )

    @property
    def bits(self) -> int | None:
        return self.spec.bits if self.spec.kind == "quantize" else None

    @property
    def pruning(self) -> str | None:
        return pruning_label(self.spec, self.measured_sparsity)

    @property
    def compression_name(self) -> str:
        return label(self.spec, self.measured_sparsity, self.checkpoint_format)

    @property
    def leaderboard_name(self) -> str:
        return leaderboard_name(self.name, self.spec)


# -- lm-eval's output files ------------------------------------------------------------------------


def find_files(paths: Sequence[Path], pattern: str, hint: str) -> list[Path]:
    """Files named on the command line, and every file matching `pattern` under named folders, but
    not a sharded sweep's shards (`units/`, beside its manifest): their merge is the setting's run."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(f for f in path.rglob(pattern) if not _in_shard(f, path))
            if not files:
                raise ResultsError(f"{path}: no {pattern} below this folder; {hint}")
            found += files
        elif path.is_file():
            found.append(path)
        else:
            raise ResultsError(f"{path}: no such file or folder")
    return found


def _in_shard(file: Path, root: Path) -> bool:
    return any(
        p.name == "units" and (p / "manifest.json").is_file() for p in file.parents if root in p.parents
    )


def find_results(paths: Sequence[Path]) -> list[Path]:
    return find_files(paths, "results_*.json", "pass lm-eval's --output_path")


def read_results(path: Path) -> dict:
    """A results JSON, checked to hold lm-eval's `results` object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ResultsError(f"{path}: not readable as JSON ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ResultsError(f"{path}: not an lm-eval results file (no `results` object)")
    return data


def drop_nonfinite(value, key: str = "", found: list[str] | None = None):
    """`value` with every NaN or infinite number replaced by None; their dotted keys go to `found`.

    JSON readers accept NaN and Infinity, but a score that is not a number must not reach a mean,
    a figure or report.json (where it would be invalid JSON).
    """
    if isinstance(value, float) and not math.isfinite(value):
        if found is not None:
            found.append(f"{key} is {value}")
        return None
    if isinstance(value, dict):
        return {k: drop_nonfinite(v, f"{key}.{k}" if key else str(k), found) for k, v in value.items()}
    if isinstance(value, list):
        return [drop_nonfinite(v, f"{key}[{i}]", found) for i, v in enumerate(value)]
    return value


def read_samples(path: Path) -> list[dict]:
    """A sample log's lines (`--log_samples`), one dict per document."""
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, json.JSONDecodeError) as err:
        raise ResultsError(f"{path}: unreadable sample log ({err})") from err


def run_date(path: Path, data: dict) -> str:
    """The `<date>` of `results_<date>.json`, which names the run's sample logs."""
    match = RESULTS_RE.match(path.name)
    return match.group(1) if match else str(data.get("date", ""))


def samples_name(task: str, date: str) -> str:
    return f"samples_{task}_{date}.jsonl"


def rescored_origins(data: dict, path: Path) -> list[tuple[Path, str]]:
    """(folder, date) of each run a rescored task of the results file `path` (read as `data`) came
    from: `rescore` records the sample log it read as `configs.<task>.metadata.rescored.from`.

    A relative `from` is relative to where rescore ran: the current folder, or one above `path`.
    """
    origins = []
    for task, config in (data.get("configs") or {}).items():
        meta = config.get("metadata") if isinstance(config, dict) else None
        rescored = meta.get("rescored") if isinstance(meta, dict) else None
        source = rescored.get("from") if isinstance(rescored, dict) else None
        name, prefix = Path(str(source)).name, f"samples_{task}_"
        if not (isinstance(source, str) and name.startswith(prefix) and name.endswith(".jsonl")):
            continue
        folder, date = Path(source).parent, name[len(prefix) : -len(".jsonl")]
        for base in [Path()] if folder.is_absolute() else [Path(), *path.absolute().parent.parents]:
            # the same run: its results file (or the log rescore read) is there
            if (base / folder / f"results_{date}.json").is_file() or (base / source).is_file():
                origins += [] if (base / folder, date) in origins else [(base / folder, date)]
                break
    return origins


def original_samples(task: str, data: dict, path: Path) -> Path | None:
    """The sample log of a task that `rescore` did not rewrite: it stays beside the original run,
    found from the rescored tasks' `rescored.from` (back through rescores of rescores)."""
    pending, seen = rescored_origins(data, path), set()
    while pending:
        folder, date = pending.pop(0)
        if (folder.resolve(), date) in seen:
            continue
        seen.add((folder.resolve(), date))
        samples = folder / samples_name(task, date)
        if samples.is_file():
            return samples
        results = folder / f"results_{date}.json"
        try:
            pending += rescored_origins(read_results(results), results)
        except ResultsError:
            continue
    return None


# -- runs ------------------------------------------------------------------------------------------


def model_name(config: dict) -> str:
    """The model's short name: its alias, else the last part of `pretrained`."""
    args = config.get("model_args") or {}
    if isinstance(args, str):
        args = simple_parse_args_string(args)
    name = config.get("model_alias") or args.get("pretrained") or config.get("model") or "model"
    return Path(str(name).rstrip("/")).name


def load_runs(paths: Sequence[Path]) -> list[ModelRun]:
    """One ModelRun per model fingerprint; a task found in several files is taken from the newest."""
    dated = []
    for path in find_results(paths):
        found: list[str] = []
        data = drop_nonfinite(read_results(path), found=found)
        dated.append((run_date(path, data), path, data, [f"{path}: {f}" for f in found]))
    runs: dict[str, ModelRun] = {}
    for date, path, data, nonfinite in sorted(dated, key=lambda t: t[0]):
        config = data.get("config") or {}
        key = config.get("model_fingerprint") or json.dumps(
            [config.get("model"), config.get("model_args")], sort_keys=True, default=str
        )
        run = runs.setdefault(key, ModelRun(key, model_name(config), config))
        run.config = config
        run.sources.append(path)
        run.nonfinite += nonfinite
        for task, results in data["results"].items():
            samples = path.parent / samples_name(task, date)
            run.tasks[task] = TaskRun(
                results=results,
                config=(data.get("configs") or {}).get(task, {}),
                samples=samples if samples.is_file() else original_samples(task, data, path),
                source=path,
                n_samples=(data.get("n-samples") or {}).get(task) or {},
                run_config=config,
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
