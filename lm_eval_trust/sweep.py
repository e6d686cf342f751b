"""`lm-eval-trust sweep`: one base model, a list of compression settings, one evaluation per setting.

Each setting runs as its own `lm-eval-trust run` process (a model's memory is freed when it ends)
into `OUTPUT/<setting>/`, with `--log_samples` and a per-setting `--use_cache`. A setting is done
when its marker file matches the command that would run now, so running the same sweep again after
an interruption skips finished settings; an interrupted setting reuses the requests it had
answered (lm-eval's request cache, and trust-hf's per-sample cache for sampled requests) and its
compressed checkpoint (the compression cache). The output folder is checked writable before any
work and locked for the sweep's length, so a second sweep into it stops at once, naming the first.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from lm_eval_trust import atomic
from lm_eval_trust.compression import (
    KIND_KEYS,
    SETTING_HELP,
    SPEC_KEYS,
    CompressionError,
    CompressionSpec,
    args_for,
    folder_name,
    format_model_args,
    model_args,
    parse_model_args,
    parse_setting,
)

# The paper's grid (Hong et al. 2024): GPTQ and AWQ at 3/4/8 bits with group size 128, and the three
# pruning methods at 50% sparsity in the 2:4 structure.
PAPER_GRID = (
    "dense",
    "gptq:3",
    "gptq:4",
    "gptq:8",
    "awq:3",
    "awq:4",
    "awq:8",
    "magnitude:2:4",
    "sparsegpt:2:4",
    "wanda:2:4",
)
DONE_MARKER = "sweep_done.json"
ENGINES = ("trust-hf", "trust-vllm")
# Held in the output folder while a sweep runs; the owner file says which process holds it.
LOCK_NAME = "sweep.lock"
OWNER_NAME = "sweep.lock.owner.json"
# What a setting decides; `--compress_args` holds only what every compressed setting shares.
SETTING_KEYS = ("compress", *KIND_KEYS["quantize"], *KIND_KEYS["prune"])


class SweepError(ValueError):
    """A sweep argument is unusable; the message names it and the fix."""


@dataclass(frozen=True)
class Setting:
    """One `--settings` entry as typed, and the compression it names."""

    text: str
    spec: CompressionSpec

    @classmethod
    def parse(cls, text: str) -> Setting:
        return cls(text, parse_setting(text))

    @property
    def name(self) -> str:
        return folder_name(self.spec)

    @property
    def model_args(self) -> dict:
        return model_args(self.spec)

    @property
    def is_dense(self) -> bool:
        return self.spec.kind is None


def parse_settings(texts: list[str]) -> list[Setting]:
    settings = [Setting.parse(t) for t in texts]
    names = [s.name for s in settings]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SweepError(f"settings {repeated} are given more than once; drop the repeats")
    return settings


def setting_command(
    setting: Setting,
    base_args: dict,
    compress_args: dict,
    run_dir: Path,
    lm_eval_args: list[str],
    model: str = "trust-hf",
) -> list[str]:
    """The `lm-eval-trust run` command line of one setting."""
    shared = {} if setting.is_dense else args_for(setting.spec.compress, compress_args)
    args = {**base_args, **shared, **setting.model_args}
    return [
        sys.executable,
        "-m",
        "lm_eval_trust.cli",
        "run",
        "--model",
        model,
        "--model_args",
        format_model_args(args),
        "--output_path",
        str(run_dir),
        "--log_samples",
        "--use_cache",
        str(run_dir / "cache" / "requests"),
        *lm_eval_args,
    ]


def command_key(command: list[str]) -> str:
    """What makes two runs of a setting the same run: the command without the interpreter path."""
    return hashlib.sha256(json.dumps(command[1:]).encode()).hexdigest()


def is_done(run_dir: Path, key: str) -> bool:
    marker = run_dir / DONE_MARKER
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return recorded.get("command_key") == key and any(run_dir.rglob("results_*.json"))


def mark_done(run_dir: Path, setting: Setting, command: list[str], seconds: float) -> None:
    record = {
        "setting": setting.text,
        "name": setting.name,
        "command": shlex.join(command[1:]),
        "command_key": command_key(command),
        "seconds": round(seconds, 1),
    }
    atomic.write_text(run_dir / DONE_MARKER, json.dumps(record, indent=2))


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def writable_folder(path: Path, flag: str) -> None:
    """Make `path` and check a file can be written in it, so a sweep fails now, not hours in."""
    if path.exists() and not path.is_dir():
        raise SweepError(
            f"{flag} {path} is a file; give a folder (the sweep writes one subfolder per setting)"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise SweepError(f"{flag} {path} cannot be written ({err}); pick a folder you can write to") from err


@contextlib.contextmanager
def output_lock(output: Path, command: str) -> Iterator[None]:
    """Hold `OUTPUT/sweep.lock` while the sweep writes there; held by another process, refuse at once.

    The kernel frees the lock when its process ends, killed or not, so a lock file left behind
    blocks nothing.
    """
    lock = FileLock(output / LOCK_NAME)
    owner = output / OWNER_NAME
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            holder = json.loads(owner.read_text())
            who = f"pid {holder['pid']} on {holder['host']}, started {holder['started']}: {holder['command']}"
        except (OSError, ValueError, KeyError):
            who = "another process"
        raise SweepError(
            f"another sweep is writing to {output}: {output / LOCK_NAME} is held by {who}. Wait for it to "
            "end, or give a different --output_path"
        ) from None
    try:
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": command,
        }
        atomic.write_text(owner, json.dumps(record))
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


def run_sweep(
    settings: list[Setting],
    base_args: dict,
    compress_args: dict,
    output: Path,
    lm_eval_args: list[str],
    log=print,
    model: str = "trust-hf",
) -> list[Path]:
    """Evaluate every setting not done yet; the run folders, in the order of `settings`."""
    started = time.monotonic()
    folders = []
    for index, setting in enumerate(settings, 1):
        run_dir = output / setting.name
        run_dir.mkdir(exist_ok=True)
        command = setting_command(setting, base_args, compress_args, run_dir, lm_eval_args, model)
        head = f"sweep [{index}/{len(settings)}] {setting.name}"
        folders.append(run_dir)
        if is_done(run_dir, command_key(command)):
            log(f"{head}: done in an earlier run, skipped ({run_dir})")
            continue
        log(
            f"{head}: running (overall {_clock(time.monotonic() - started)} so far)\n  {shlex.join(command[1:])}"
        )
        began = time.monotonic()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        code = subprocess.call(command, env=env)
        if code != 0:
            raise SweepError(
                f"{head} failed (exit {code}); its log is above. Fix the cause and run the same command "
                f"again: finished settings and answered requests are kept."
            )
        mark_done(run_dir, setting, command, time.monotonic() - began)
        log(f"{head}: finished in {_clock(time.monotonic() - began)}")
    log(f"sweep: {len(settings)} settings evaluated in {_clock(time.monotonic() - started)} ({output})")
    return folders


def check_vllm_env() -> None:
    """`--model trust-vllm` needs vLLM here or the vLLM environment: said before any setting runs."""
    import importlib.util

    from lm_eval_trust import vllm_env

    if importlib.util.find_spec("vllm") is None and not vllm_env.installed(vllm_env.location()):
        raise SweepError(
            f"--model trust-vllm runs in the vLLM environment, and there is none at {vllm_env.location()}; "
            "create it with `lm-eval-trust vllm-env`"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lm-eval-trust sweep",
        description="Evaluate a base model under several compression settings, then write the comparison "
        "report. Arguments not listed here (--limit, --metadata, --batch_size, --device, --gen_kwargs, "
        "--apply_chat_template, ...) are passed to every lm-eval run unchanged.",
        epilog=SETTING_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model_args", required=True, help="the base model, e.g. pretrained=smollm2-135m-instruct"
    )
    parser.add_argument(
        "--settings",
        nargs="+",
        default=list(PAPER_GRID),
        metavar="SETTING",
        help=f"compression settings (default: the paper's grid, {' '.join(PAPER_GRID)})",
    )
    parser.add_argument(
        "--compress_args",
        default="",
        help="model_args added to every compressed setting, e.g. calib_dataset=self,calib_samples=16",
    )
    parser.add_argument(
        "--model",
        choices=ENGINES,
        default="trust-hf",
        help="the model type every setting is evaluated with: trust-hf (transformers) or trust-vllm (vLLM, in "
        "the environment `lm-eval-trust vllm-env` makes; compression still runs here)",
    )
    parser.add_argument("--tasks", default="trust", help="lm-eval tasks, comma-separated (default: trust)")
    parser.add_argument(
        "--output_path", required=True, help="folder for every setting's results and the report"
    )
    parser.add_argument("--report_dir", help="where the report goes (default: OUTPUT_PATH/report)")
    parser.add_argument("--bootstrap_iters", type=int, default=1000, help="bootstrap resamples per change")
    return parser


def sweep_main(argv: list[str]) -> int:
    parser = build_parser()
    args, lm_eval_args = parser.parse_known_args(argv)
    try:
        forbidden = [
            a for a in lm_eval_args if a.split("=")[0] in ("--output_path", "-o", "--use_cache", "-c")
        ]
        if forbidden:
            raise SweepError(f"{forbidden[0]} is set by the sweep for each setting; drop it")
        base_args = parse_model_args(args.model_args, "--model_args")
        if "pretrained" not in base_args:
            raise SweepError("--model_args needs pretrained=... (a model alias, path or hub id)")
        given = sorted(set(base_args) & set(SPEC_KEYS))
        if given:
            raise SweepError(
                f"--model_args sets {given}; compression belongs in --settings and calibration in "
                "--compress_args (see --help)"
            )
        compress_args = parse_model_args(args.compress_args, "--compress_args")
        given = [k for k in SETTING_KEYS if k in compress_args]
        if given:
            raise SweepError(
                f"--compress_args sets {given}; each setting decides those, so write them in --settings "
                "(see --help)"
            )
        settings = parse_settings(args.settings)
        if args.model == "trust-vllm":
            check_vllm_env()
        output = Path(args.output_path)
        report_dir = Path(args.report_dir) if args.report_dir else output / "report"
        writable_folder(output, "--output_path")
        writable_folder(report_dir, "--report_dir" if args.report_dir else "the report folder")
        with output_lock(output, shlex.join(["lm-eval-trust", "sweep", *argv])):
            return _sweep_and_report(args, settings, base_args, compress_args, lm_eval_args, report_dir)
    except (SweepError, CompressionError) as err:
        print(f"lm-eval-trust sweep: error: {err}", file=sys.stderr)
        return 2


def _sweep_and_report(args, settings, base_args, compress_args, lm_eval_args, report_dir: Path) -> int:
    output = Path(args.output_path)
    try:
        folders = run_sweep(
            settings,
            base_args,
            compress_args,
            output,
            ["--tasks", args.tasks, *lm_eval_args],
            model=args.model,
        )
    except SweepError as err:
        print(f"lm-eval-trust sweep: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lm-eval-trust sweep: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    from lm_eval_trust import report

    baseline = next((f for f, s in zip(folders, settings, strict=True) if s.is_dense), None)
    try:
        path = report.write_report(
            folders,
            report_dir,
            baseline=str(baseline) if baseline else None,
            bootstrap_iters=args.bootstrap_iters,
        )
    except report.ReportError as err:
        print(
            f"lm-eval-trust sweep: error: the evaluations are done, the report failed: {err}\n"
            f"Fix it and write the report with `lm-eval-trust report {output} -o {report_dir}`",
            file=sys.stderr,
        )
        return 1
    print(f"sweep: report written to {path}")
    return 0
