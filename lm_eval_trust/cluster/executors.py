"""Executors: run a sweep's units here in order, as Ray tasks, or as Slurm job arrays (submitit).

The engines do the scheduling, the GPU assignment and the retries: Ray gives a task the GPUs it asks
for (CUDA_VISIBLE_DEVICES), Slurm a job those of its allocation, and a unit never picks a device
itself. Compress units run first, then the evaluate units of the settings whose compression
succeeded. Each unit's process writes its log, outputs and (when it succeeds) its done marker in
the unit's own folder, so that folder, like the user cache, must be on storage every node sees.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from lm_eval_trust.cluster.units import SETTING_MARKER, UNITS_DIR, Unit, UnitError, option

EXECUTORS = ("local", "ray", "slurm")
POLL_SECONDS = 2.0


class UnitFailed(RuntimeError):
    """A unit's command failed; the message says how (it travels back from Ray and Slurm workers)."""


@dataclass
class Failure:
    unit: Unit
    reason: str
    log: str = ""  # where its output is; empty: the unit's own unit.log

    @property
    def where(self) -> str:
        return self.log or str(self.unit.log)


def run_unit(unit: Unit, stream: bool = False) -> float:
    """Run one unit where the executor placed it; its seconds. The marker is written only on success.
    Its output goes to its `unit.log`, or with `stream` to this terminal."""
    folder = Path(unit.folder)
    try:
        unit.clear()
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UnitFailed(f"its folder cannot be made ({err})") from None
    began = time.monotonic()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if stream:
        code = subprocess.call(list(unit.command), env=env)
    else:
        with open(unit.log, "w") as log:
            code = subprocess.call(list(unit.command), env=env, stdout=log, stderr=subprocess.STDOUT)
    if code != 0:
        raise UnitFailed(f"exit {code}")
    seconds = time.monotonic() - began
    unit.mark_done(seconds)
    return seconds


class Progress:
    """Units done, running and failed over the whole cluster, with the time left at the rate so far."""

    def __init__(self, plan: list[Unit], todo: int, log):
        self.index = {u.label: i for i, u in enumerate(plan, 1)}
        self.size, self.total, self.log = len(plan), todo, log
        self.done = self.failed = self.running = 0
        self.began = time.monotonic()

    def head(self, unit: Unit) -> str:
        return f"sweep [{self.index[unit.label]}/{self.size}] {unit.label}"

    def started(self, units: list[Unit], where: str) -> None:
        self.running += len(units)
        if where == "local":
            self.log(
                f"{self.head(units[0])}: running (overall {clock(time.monotonic() - self.began)} so far)"
            )
            self.log(f"  {units[0].shown}")
        else:
            self.log(f"sweep: {len(units)} units submitted ({where})")

    def finished(self, unit: Unit, seconds: float = 0.0, failed: str | None = None) -> None:
        self.running -= 1
        self.failed += bool(failed)
        self.done += not failed
        left = self.total - self.done - self.failed
        elapsed = time.monotonic() - self.began
        eta = f", about {clock(elapsed / self.done * left)} left" if self.done and left else ""
        what = f"failed ({failed})" if failed else f"finished in {clock(seconds)}"
        self.log(
            f"{self.head(unit)}: {what}; units {self.done}/{self.total} done, {self.running} running or queued, "
            f"{self.failed} failed{eta}"
        )


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def run_local(units: list[Unit], retries: int, progress: Progress, before=None, **_) -> list[Failure]:
    """One unit after another; `before` checks what finished so far (the sweep's precision check).
    An unsharded setting prints to the terminal, as a one-machine sweep always did."""
    failures = []
    for unit in units:
        if before:
            before()
        progress.started([unit], "local")
        stream = unit.marker_name == SETTING_MARKER
        for attempt in range(retries + 1):
            try:
                progress.finished(unit, run_unit(unit, stream))
                break
            except UnitFailed as err:
                if attempt == retries:
                    progress.finished(unit, failed=str(err))
                    failures.append(Failure(unit, str(err), "printed above" if stream else ""))
    return failures


def run_ray(
    units: list[Unit], retries: int, progress: Progress, ray_address=None, gpus=0, **_
) -> list[Failure]:
    """Each unit a Ray task asking for `gpus` GPUs (none on a cluster without GPUs), retried by Ray."""
    import ray

    ray.init(address=ray_address, include_dashboard=False, log_to_driver=False)
    try:
        return _ray_tasks(ray, units, retries, progress, gpus)
    finally:
        ray.shutdown()


def _ray_tasks(ray, units: list[Unit], retries: int, progress: Progress, gpus: int) -> list[Failure]:
    if not ray.cluster_resources().get("GPU"):
        gpus = 0
    task = ray.remote(run_unit)
    refs = {}
    for unit in units:
        ask = min(gpus, 1) if unit.kind == "compress" else gpus
        options = {"num_cpus": 1, "num_gpus": ask, "max_retries": retries, "retry_exceptions": [UnitFailed]}
        refs[task.options(**options).remote(unit)] = unit
    progress.started(units, "Ray")
    failures, pending = [], list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        unit = refs[ready[0]]
        try:
            progress.finished(unit, ray.get(ready[0]))
        except ray.exceptions.RayError as err:
            cause = getattr(err, "cause", None)
            reason = (
                str(cause)
                if isinstance(cause, UnitFailed)
                else f"{type(err).__name__}: {err}".splitlines()[0]
            )
            progress.finished(unit, failed=reason)
            failures.append(Failure(unit, reason))
    return failures


def slurm_executor(slurm_args: dict, folder: Path):
    """submitit's executor for `--slurm_args` (`cluster=local` runs the jobs here), checked before
    any unit runs: submitit names a parameter it does not know."""
    import submitit

    params = dict(slurm_args)
    cluster = params.pop("cluster", None)
    try:
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
        executor.update_parameters(**{"name": "lm-eval-trust", **params})
    except (ValueError, NameError, TypeError, AssertionError, RuntimeError) as err:
        raise UnitError(f"--slurm_args: {err}") from None
    return executor


def run_slurm(
    units: list[Unit], retries: int, progress: Progress, submitit_executor=None, **_
) -> list[Failure]:
    """The units as one job array; those that fail go again as a new array, `retries` times."""
    failed: list[Failure] = []
    for attempt in range(retries + 1):
        jobs = list(zip(submitit_executor.map_array(run_unit, units), units, strict=True))
        progress.started(units, "Slurm job array" if attempt == 0 else "Slurm job array, retry")
        failed = []
        while jobs:
            time.sleep(POLL_SECONDS)
            for job, unit in [j for j in jobs if j[0].done()]:
                jobs.remove((job, unit))
                try:
                    progress.finished(unit, job.result())
                except Exception as err:  # submitit's FailedJobError, UncompletedJobError, ...
                    lines = [line for line in str(err).splitlines() if "UnitFailed" in line]
                    reason = lines[-1].split("UnitFailed:")[-1].strip() if lines else type(err).__name__
                    failed.append(Failure(unit, reason))
                    progress.finished(unit, failed=reason if attempt == retries else f"{reason}; retried")
        units = [f.unit for f in failed]
        if not units:
            break
        progress.total += len(units) if attempt < retries else 0
    return failed


RUNNERS = {"local": run_local, "ray": run_ray, "slurm": run_slurm}


def execute(units: list[Unit], executor: str, retries: int, log, **engine) -> list[Failure]:
    """Run every unit not done yet, compress units first; the failed units, in plan order."""
    todo = [u for u in units if not u.is_done()]
    progress = Progress(units, len(todo), log)
    for unit in units:
        if unit not in todo:
            log(f"{progress.head(unit)}: done in an earlier run, skipped ({unit.folder})")
    failures: list[Failure] = []
    for kind in ("compress", "evaluate"):
        blocked = {f.unit.setting for f in failures}
        phase = [u for u in todo if u.kind == kind and u.setting not in blocked]
        failures += [
            Failure(u, "its setting's compress unit failed")
            for u in todo
            if u.kind == kind and u.setting in blocked
        ]
        if phase:
            failures += RUNNERS[executor](phase, retries, progress, **engine)
    order = {u.label: i for i, u in enumerate(units)}
    return sorted(failures, key=lambda f: order[f.unit.label])


def failure_table(failures: list[Failure]) -> str:
    rows = [("setting", "unit", "reason", "log")]
    rows += [(f.unit.setting, f.unit.name or "(all tasks)", f.reason, f.where) for f in failures]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  " + "  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows)


def add_arguments(parser) -> None:
    """The sweep's executor flags."""
    group = parser.add_argument_group(
        "executors (see README, 'On a cluster')",
        "Without --shards or --unit_tokens each setting is one unit, as on one machine. With them a "
        "compressed setting gets a compress unit and each task is split into shards of its documents, "
        "merged per setting when every shard is done.",
    )
    group.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: units one after another here (default); ray: each unit a Ray task; slurm: job "
        "arrays through submitit",
    )
    group.add_argument(
        "--shards", type=int, metavar="N", help="split every task into N shards of about equal cost"
    )
    group.add_argument(
        "--unit_tokens",
        type=int,
        metavar="T",
        help="units of about T estimated tokens (samples x max_gen_toks + prompt/4): costly tasks split, "
        "light ones packed together; at a measured rate of R tokens/s a unit takes about T/R seconds",
    )
    group.add_argument(
        "--retries",
        type=int,
        metavar="N",
        help="runs again of a failed unit (default: 0 local, 1 ray and slurm)",
    )
    group.add_argument(
        "--ray_address", help="join this Ray cluster (default: start a local Ray on this machine)"
    )
    group.add_argument(
        "--slurm_args",
        help='submitit parameters as JSON, e.g. \'{"slurm_partition": "gpu", "slurm_account": "me", '
        '"timeout_min": 240, "gpus_per_node": 1, "slurm_setup": ["source .venv/bin/activate"]}\'; '
        '{"cluster": "local"} runs the jobs here through submitit',
    )


def check_arguments(args) -> None:
    """The executor flags, refused before any unit runs when they cannot work as given."""
    for flag in ("shards", "unit_tokens"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UnitError(f"--{flag} {value}: give a positive number")
    if args.shards and args.unit_tokens:
        raise UnitError("--shards and --unit_tokens both size the units; give one of them")
    if args.retries is not None and args.retries < 0:
        raise UnitError(f"--retries {args.retries}: give 0 or more")
    if args.ray_address and args.executor != "ray":
        raise UnitError("--ray_address is for --executor ray; add it or drop --ray_address")
    if args.slurm_args is not None and args.executor != "slurm":
        raise UnitError("--slurm_args is for --executor slurm; add it or drop --slurm_args")
    try:
        args.slurm_args = json.loads(args.slurm_args or "{}")
    except json.JSONDecodeError as err:
        raise UnitError(f'--slurm_args is not JSON ({err}); e.g. \'{{"cluster": "local"}}\'') from None
    if not isinstance(args.slurm_args, dict):
        raise UnitError("--slurm_args must be a JSON object of submitit parameters")


def retries(args) -> int:
    if args.retries is not None:
        return args.retries
    return 0 if args.executor == "local" else 1


def engine_options(args, model: str, base_args: dict, lm_eval_args: list[str], output: Path) -> dict:
    """What the executor needs, checked before any unit runs: Ray's address and a unit's GPUs
    (vLLM's tensor_parallel_size, one for trust-hf, none with --device cpu), or submitit's executor."""
    if args.executor == "ray":
        if importlib.util.find_spec("ray") is None:
            raise UnitError("--executor ray needs Ray: pip install -e '.[ray]' (or give --executor local)")
        gpus = int(base_args.get("tensor_parallel_size", 1)) if model == "trust-vllm" else 1
        return {
            "ray_address": args.ray_address,
            "gpus": 0 if option(lm_eval_args, "--device") == "cpu" else gpus,
        }
    if args.executor == "slurm":
        if importlib.util.find_spec("submitit") is None:
            raise UnitError(
                "--executor slurm needs submitit: pip install -e '.[slurm]' (or give --executor local)"
            )
        return {"submitit_executor": slurm_executor(args.slurm_args, output / UNITS_DIR / "slurm")}
    return {}
