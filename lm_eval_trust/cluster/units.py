"""A sweep's units, their keys and done markers, and the manifest written before any unit runs.

Without sharding a setting is one unit: today's `lm-eval-trust run` of every task into
`OUTPUT/<setting>`. With `--shards` or `--unit_tokens` a compressed setting gets a compress unit
(into the compression cache), and its evaluation is split into shards: contiguous ranges of a
task's documents, as `docs_per_scenario` drew them and `--limit` cut them, each run through
lm-eval's `--samples` into `OUTPUT/units/<setting>/<unit>/`. Ranges are cut by estimated cost (new
tokens: samples per prompt x max_gen_toks, plus prompt characters / 4).

A unit is done when its marker holds the key of the unit the plan makes now. The key covers the
command (model, compression, engine arguments, documents), the package version and the data
manifest. For a shard it leaves out its folder (an output folder can move) and `--metadata`, and
covers instead what the options decide for
its own documents (their prompt digests, generation settings and samples per prompt): a changed
option reruns exactly the shards whose requests it changes, and a scoring option none (the merge
scores the raw responses with the options given now).
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import math
import shutil
from dataclasses import asdict, dataclass, field
from importlib import metadata as package_metadata
from pathlib import Path

from lm_eval_trust import atomic
from lm_eval_trust.data import MANIFEST_PATH
from lm_eval_trust.dimension import DIGEST

UNITS_DIR = "units"
MANIFEST = "manifest.json"
MARKER = "unit_done.json"
SETTING_MARKER = "sweep_done.json"
REQUESTS = "requests"
# Linux refuses one argument over 128 KiB; a unit's `--samples` list must stay below.
MAX_SAMPLES_ARG = 120_000


class UnitError(ValueError):
    """The units cannot be planned as asked; the message names the flag and the fix."""


@dataclass(frozen=True)
class Unit:
    """One job of the sweep: a command, the folder it writes, and the key its marker must hold."""

    kind: str  # "compress" or "evaluate"
    setting: str
    name: str
    command: tuple[str, ...]
    folder: str
    key: str
    shown: str  # the command as printed and recorded, secrets redacted
    docs: dict = field(default_factory=dict)  # task -> [first, stop) of its documents; {} = all
    marker_name: str = MARKER

    @property
    def label(self) -> str:
        return f"{self.setting} {self.name}" if self.name else self.setting

    @property
    def log(self) -> Path:
        return Path(self.folder) / "unit.log"

    def is_done(self) -> bool:
        try:
            recorded = json.loads((Path(self.folder) / self.marker_name).read_text())
        except (OSError, ValueError):
            return False
        if not isinstance(recorded, dict) or recorded.get("key") != self.key:
            return False
        return self.kind == "compress" or any(Path(self.folder).rglob("results_*.json"))

    def mark_done(self, seconds: float) -> None:
        record = {"unit": self.label, "command": self.shown, "key": self.key, "seconds": round(seconds, 1)}
        atomic.write_text(Path(self.folder) / self.marker_name, json.dumps(record, indent=2))

    def clear(self) -> None:
        """Before a shard runs: its earlier outputs go, its answered requests stay (resume)."""
        folder = Path(self.folder)
        if self.marker_name != MARKER or not folder.is_dir():
            return
        for path in folder.iterdir():
            if path.name.startswith(REQUESTS):
                continue
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def unit_key(command, work: dict) -> str:
    """The command without the interpreter path, the work its options decide, the package version
    and the data manifest the run checks its files against."""
    payload = [
        list(command[1:]),
        work,
        package_metadata.version("lm-eval-trust"),
        hashlib.sha256(MANIFEST_PATH.read_bytes()).hexdigest(),
    ]
    return hashlib.sha256(json.dumps(payload, default=str).encode()).hexdigest()


@dataclass
class TaskWork:
    """A trust task's documents in run order, with each one's cost and the work it asks for."""

    task: str
    costs: list[int]
    work: list[list]  # per document: doc_index, scenario, prompt digest, generation settings, samples
    options: dict  # the task's options as the run records them (YAML, then --metadata)

    def digest(self, first: int, stop: int) -> str:
        return hashlib.sha256(json.dumps(self.work[first:stop], default=str).encode()).hexdigest()


def task_work(tasks_arg: str, lm_eval_args: list[str]) -> list[TaskWork]:
    """Build the tasks as every unit's run will (same `--metadata`, `--include_path`, `--limit`)."""
    from lm_eval_trust.dimension import TaskConfigError
    from lm_eval_trust.plan.design import PlanError, load_tasks, sample_size

    try:
        metadata = json.loads(option(lm_eval_args, "--metadata") or "{}")
        limit = float(option(lm_eval_args, "--limit", "-L") or 0) or None
    except ValueError as err:
        raise UnitError(f"--metadata or --limit cannot be read ({err}); give JSON and a number") from None
    names = [t.strip() for t in tasks_arg.split(",") if t.strip()]
    try:
        tasks = load_tasks(names, metadata, option(lm_eval_args, "--include_path"))
        out = []
        for name, task in tasks.items():
            n = sample_size(task, limit)
            costs, work = [], []
            for _, row in task.doc_iterator(limit=n):
                scenario = row["scenario"]
                settings = task.generation_kwargs_for(scenario)
                samples = task.n_samples_for(scenario)
                prompt = task.fewshot_context(row, 0)
                costs.append(samples * int(settings.get("max_gen_toks") or 256) + len(str(prompt)) // 4)
                work.append([row["doc_index"], scenario, row[DIGEST], settings, samples])
            out.append(TaskWork(name, costs, work, json.loads(json.dumps(task.config.metadata, default=str))))
    except (PlanError, TaskConfigError) as err:
        raise UnitError(
            f"--shards and --unit_tokens split trust tasks only ({err}); run other tasks in a sweep without them"
        ) from err
    return out


def option(args: list[str], *flags: str) -> str | None:
    """The value of an lm-eval flag in the pass-through arguments (`--flag V` or `--flag=V`)."""
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name in flags:
            return value if eq else (args[i + 1] if i + 1 < len(args) else None)
    return None


def without(args: list[str], *flags: str) -> list[str]:
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg.partition("=")[0] in flags:
            skip = "=" not in arg
        else:
            out.append(arg)
    return out


def cost_ranges(costs: list[int], parts: int) -> list[tuple[int, int]]:
    """`parts` contiguous, non-empty ranges of about equal cost (fewer when there are fewer documents)."""
    parts = max(1, min(parts, len(costs)))
    cumulative = list(itertools.accumulate(costs))
    bounds = [0]
    for k in range(1, parts):
        cut = bisect.bisect_left(cumulative, cumulative[-1] * k / parts) + 1
        bounds.append(min(max(cut, bounds[-1] + 1), len(costs) - (parts - k)))
    return list(zip(bounds, [*bounds[1:], len(costs)], strict=True))


def shard_groups(works: list[TaskWork], shards: int | None, unit_tokens: int | None) -> list[dict]:
    """Each unit's documents, {task: (first, stop)}: N shards a task, or units of about
    `unit_tokens` estimated tokens (a costly task split, light ones packed together)."""
    if shards:
        return [{w.task: r} for w in works for r in cost_ranges(w.costs, shards)]
    pieces = []
    for w in works:
        for r in cost_ranges(w.costs, math.ceil(sum(w.costs) / unit_tokens)):
            pieces.append((sum(w.costs[r[0] : r[1]]), w.task, r))
    groups: list[tuple[int, dict]] = []
    for cost, task, r in sorted(pieces, key=lambda p: -p[0]):  # first fit, costliest first
        home = next((g for g in groups if g[0] + cost <= unit_tokens and task not in g[1]), None)
        if home is None:
            groups.append((cost, {task: r}))
        else:
            groups[groups.index(home)] = (home[0] + cost, {**home[1], task: r})
    return sorted((g for _, g in groups), key=lambda g: sorted(g.items()))


def unit_name(group: dict, works: dict[str, TaskWork], counts: dict[str, int], index: int) -> str:
    if len(group) > 1:
        return f"pack{index:03d}"
    ((task, (first, stop)),) = group.items()
    return f"{task}.{first}-{stop - 1}of{len(works[task].costs)}" if counts[task] > 1 else task


def setting_unit(setting: str, command: list[str], folder: Path, redact) -> Unit:
    """An unsharded setting: one run of every task into its folder, as a one-machine sweep runs it."""
    key = unit_key(command, {})
    return Unit(
        "evaluate", setting, "", tuple(command), str(folder), key, redact(command), {}, SETTING_MARKER
    )


def sharded_units(
    setting: str,
    command: list[str],
    compress: list[str] | None,
    output: Path,
    works: list[TaskWork],
    groups: list[dict],
    redact,
) -> list[Unit]:
    """A setting's compress unit (if compressed) and one evaluate unit per group of documents."""
    base = output / UNITS_DIR / setting
    units = []
    if compress:
        key = unit_key(compress, {})
        units.append(
            Unit(
                "compress",
                setting,
                "compress",
                tuple(compress),
                str(base / "compress"),
                key,
                redact(compress),
            )
        )
    by_task = {w.task: w for w in works}
    counts = {w.task: sum(w.task in g for g in groups) for w in works}
    for index, group in enumerate(groups, 1):
        name = unit_name(group, by_task, counts, index)
        folder = base / name
        samples = json.dumps({t: list(range(*r)) for t, r in group.items()}, separators=(",", ":"))
        if len(samples) > MAX_SAMPLES_ARG:
            raise UnitError(
                f"unit {name} lists {sum(r[1] - r[0] for r in group.values())} documents, more than one "
                "command line holds; give more --shards or a smaller --unit_tokens"
            )
        args = retarget(command, folder, ",".join(group))
        args = [*without(args, "--limit", "-L"), "--samples", samples]
        work = {t: by_task[t].digest(*r) for t, r in group.items()}
        key = unit_key(without(args, "--metadata", "--output_path", "--use_cache"), work)
        docs = {t: list(r) for t, r in group.items()}
        units.append(Unit("evaluate", setting, name, tuple(args), str(folder), key, redact(args), docs))
    return units


def retarget(command: list[str], folder: Path, tasks: str) -> list[str]:
    """A setting's run command writing into a unit's folder, for the unit's tasks."""
    values = {"--output_path": str(folder), "--use_cache": str(folder / REQUESTS), "--tasks": tasks}
    out = list(command)
    for i, arg in enumerate(out[:-1]):
        if arg in values:
            out[i + 1] = values[arg]
    return out


def write_manifest(output: Path, units: list[Unit]) -> Path:
    """Every unit with its documents and key, before any runs: what the merge checks against."""
    path = output / UNITS_DIR / MANIFEST
    rows = [{k: v for k, v in asdict(u).items() if k not in ("command", "marker_name")} for u in units]
    atomic.write_text(path, json.dumps({"units": rows}, indent=2))
    return path
