"""Checks of lm-eval's run arguments before any model work, and of the results after it.

lm-eval 0.4.13 creates (and our `trust-hf` compresses) the model before it reads most arguments:
a bad `--batch_size` fails after loading, an `--output_path` below a file fails only when the
finished results are saved (a warning, exit code 0), and a damaged `--use_cache` file fails inside
sqlite with no path. `lm-eval-trust run` checks these first (`check`) and, after the run, that the
results are on disk (`results_written`).
"""

from __future__ import annotations

import fnmatch
import importlib
import logging
import os
from pathlib import Path

import yaml

from lm_eval_trust import TASKS_DIR
from lm_eval_trust.atomic import set_aside_if_damaged
from lm_eval_trust.model_adapters.generation import check_batch_size

log = logging.getLogger(__name__)


class PreflightError(ValueError):
    """A run argument is unusable; the message names the flag, the value and the fix."""


def _batch_size(value) -> None:
    try:
        check_batch_size(value)
    except ValueError as err:
        raise PreflightError(str(err)) from None


def _limit(value) -> None:
    if value is not None and value <= 0:
        raise PreflightError(
            f"--limit {value:g} selects no documents; give a count (e.g. --limit 8), a fraction below 1 "
            "(e.g. --limit 0.1), or drop --limit to run everything"
        )


def output_dir(output_path: str) -> Path:
    """The folder lm-eval writes into: a `.json` path's parent, else the path itself."""
    path = Path(output_path)
    return path.parent if path.suffix == ".json" else path


def check_writable(path: Path, flag: str) -> None:
    """`path` is, or can be made, a folder this process can write into."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        what = "is" if probe == path else f"lies below {probe}, which is"
        raise PreflightError(
            f"{flag} {path} {what} a file, so no results could be saved there; give a folder path "
            "(or remove the file)"
        )
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise PreflightError(
            f"{flag} {path}: {probe} is not writable by this user; give a folder you can write"
        )


def recover_cache(use_cache: str) -> list[Path]:
    """Move damaged `--use_cache` sqlite files aside (the run then recomputes what they held)."""
    base = Path(use_cache)
    found = sorted(base.parent.glob(base.name + "_rank*.db")) if base.parent.is_dir() else []
    return [aside for db in found if (aside := set_aside_if_damaged(db, "--use_cache file"))]


class _Loader(yaml.SafeLoader):
    """Reads task YAMLs without importing what their `!function` tags name."""


_Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def _trust_yamls() -> dict[str, dict]:
    configs = {}
    for path in sorted(TASKS_DIR.glob("*/trust_*.yaml")):
        config = yaml.load(path.read_text(), Loader=_Loader) or {}
        configs[config.get("task", path.stem)] = config
    return configs


def trust_task_settings() -> dict[str, dict]:
    """Each trust task's generation settings, from its YAML: name -> generation_kwargs."""
    return {task: config.get("generation_kwargs") or {} for task, config in _trust_yamls().items()}


def check_subsample(metadata: dict, tasks: dict[str, dict]) -> None:
    """A `docs_per_scenario` entry that matches no scenario of the trust tasks run (`advglu_*`, or
    `advglue_*` in a fairness run) would run the full set while the results record a subsample:
    refused before the model loads. Every scenario name starts with its dimension's prefix, so most
    entries are checked from the prefixes alone; one that starts with a wildcard (`*_fewshot*`, not
    `*`) is checked against the scenarios the selected tasks' data has."""
    from lm_eval_trust.data import DataRoot
    from lm_eval_trust.subsample import DOCS_PER_SCENARIO, aimed_at_nothing, literal_prefix

    k = metadata.get(DOCS_PER_SCENARIO)
    if not isinstance(k, dict):
        return
    options = {task: c.get("metadata") or {} for task, c in _trust_yamls().items() if task in tasks}
    prefixes = sorted(importlib.import_module(o["dimension"]).SCENARIO_PREFIX for o in options.values())
    nowhere = aimed_at_nothing(k, prefixes)
    open_ended = [p for p in k if p not in nowhere and not literal_prefix(p) and p.strip("*")]
    if open_ended:
        data = DataRoot(metadata.get("data_dir"))
        scenarios = []
        for task in tasks:
            module = importlib.import_module(options[task]["dimension"])
            scenarios += module.load(data, {**options[task], **metadata}).scenarios
        nowhere += [p for p in open_ended if not any(fnmatch.fnmatchcase(s, p) for s in scenarios)]
    if nowhere:
        raise PreflightError(
            f"--metadata {DOCS_PER_SCENARIO}: {nowhere} can match no scenario of the tasks run (every "
            f"scenario name starts with one of {', '.join(prefixes)}); correct the pattern, or drop it"
        )


def selected_trust_tasks(names: list[str]) -> dict[str, dict]:
    """The trust tasks among `--tasks` (the group `trust`, task names and glob patterns)."""
    tasks = trust_task_settings()
    if "trust" in names:
        return tasks
    return {t: kw for t, kw in tasks.items() if any(fnmatch.fnmatchcase(t, n) for n in names)}


def _value(value):
    """A `--gen_kwargs` value as lm-eval would pass it (it leaves some as strings)."""
    if isinstance(value, str):
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _gen_kwargs(gen_kwargs: dict, tasks: dict[str, dict]) -> None:
    given = {k: _value(v) for k, v in (gen_kwargs or {}).items()}
    sampled = [t for t, kw in tasks.items() if {**kw, **given}.get("do_sample")]
    temperature = given.get("temperature")
    if sampled and isinstance(temperature, (int, float)) and temperature <= 0:
        raise PreflightError(
            f"--gen_kwargs temperature={temperature:g} cannot sample, and {', '.join(sampled)} sample "
            "several answers per prompt; give temperature>0, or add do_sample=false for greedy answers "
            "(one per prompt)"
        )
    for key in ("max_gen_toks", "max_new_tokens"):
        value = given.get(key)
        if value is not None and (not isinstance(value, (int, float)) or value < 1 or value != int(value)):
            raise PreflightError(f"--gen_kwargs {key}={value!r} must be a positive integer")


def _device(args) -> None:
    """lm-eval records `device: cuda:0` when none is given, also for a run on the CPU."""
    import torch

    if args.device is None:
        args.device = "cuda:0" if torch.cuda.is_available() else "cpu"
    elif str(args.device).startswith("cuda") and not torch.cuda.is_available():
        raise PreflightError(f"--device {args.device}: this machine has no CUDA device; use --device cpu")


def check(args) -> None:
    """Every check that needs no model, in the order a user would fix them."""
    _limit(getattr(args, "limit", None))
    if getattr(args, "command", None) not in (None, "run") or not getattr(args, "tasks", None):
        return
    if hasattr(args, "batch_size"):
        _batch_size(args.batch_size)
    max_batch = getattr(args, "max_batch_size", None)
    if max_batch is not None and max_batch < 1:
        raise PreflightError(f"--max_batch_size {max_batch} must be a positive integer")
    tasks = selected_trust_tasks(args.tasks)
    _gen_kwargs(getattr(args, "gen_kwargs", None), tasks)
    if tasks:
        check_subsample(getattr(args, "metadata", None) or {}, tasks)
    if "trust_toxicity" in tasks:
        from lm_eval_trust.scoring.toxicity import ScorerError, check_options

        try:
            check_options(getattr(args, "metadata", None) or {})
        except ScorerError as err:
            raise PreflightError(str(err)) from err
    if tasks and getattr(args, "num_fewshot", None):
        log.warning(
            "--num_fewshot %s does not apply to the trust tasks: each DecodingTrust scenario fixes its "
            "own demonstrations, so their prompts are unchanged and their results record n-shot 0",
            args.num_fewshot,
        )
    if hasattr(args, "device"):
        _device(args)
    if getattr(args, "output_path", None):
        check_writable(output_dir(args.output_path), "--output_path")
    if getattr(args, "use_cache", None):
        check_writable(Path(args.use_cache).parent, "--use_cache")
        recover_cache(args.use_cache)


def prepare(args) -> None:
    """One-time work that needs no model, done before the model loads: the offline toxicity
    scorer's fit (its model features use every core here; vLLM's CPU engine leaves a process one
    thread), and any scorer error (a missing key or package) before minutes of model loading."""
    if getattr(args, "command", None) not in (None, "run") or "trust_toxicity" not in selected_trust_tasks(
        getattr(args, "tasks", None) or []
    ):
        return
    from lm_eval_trust.tasks.toxicity.toxicity import scorer_for

    scorer_for(getattr(args, "metadata", None) or {})


def results_written(args, since: float) -> Path | None:
    """The results file this run wrote, or None; lm-eval only warns when it cannot save one."""
    folder = output_dir(args.output_path)
    stem = Path(args.output_path).stem + "_" if Path(args.output_path).suffix == ".json" else "results_"
    found = [p for p in folder.rglob(f"{stem}*.json") if p.stat().st_mtime >= since]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None
