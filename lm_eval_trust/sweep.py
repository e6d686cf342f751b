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
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

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
from lm_eval_trust.output_folder import FolderError, output_lock, writable_folder
from lm_eval_trust.secrets import Redactor, argv_secrets, env_secrets

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


def mark_done(
    run_dir: Path, setting: Setting, command: list[str], seconds: float, redactor: Redactor | None = None
) -> None:
    record = {
        "setting": setting.text,
        "name": setting.name,
        "command": (redactor or Redactor()).text(shlex.join(command[1:])),
        "command_key": command_key(command),
        "seconds": round(seconds, 1),
    }
    atomic.write_text(run_dir / DONE_MARKER, json.dumps(record, indent=2))


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def computes_in(run_dir: Path) -> str | None:
    """The precision a finished setting's weights computed in, as its results record it."""
    for path in sorted(run_dir.rglob("results_*.json")):
        try:
            return (json.loads(path.read_text()).get("config") or {}).get("computes_in")
        except (OSError, ValueError):
            continue
    return None


def check_precision(folders: list[Path]) -> None:
    """Every setting run so far computes in the first one's precision; else the sweep stops before
    the rest run, since the report would mix precision with compression (and refuse)."""
    known = [(f.name, p) for f in folders if (p := computes_in(f))]
    odd = next(((name, p) for name, p in known[1:] if p != known[0][1]), None)
    if odd:
        raise SweepError(
            f"sweep: {odd[0]} computes in {odd[1]}, {known[0][0]} in {known[0][1]}: a change between them "
            f"would mix precision with compression. Give one dtype= in --model_args (e.g. "
            f"dtype={known[0][1]}) and run the same sweep again"
        )


def run_sweep(
    settings: list[Setting],
    base_args: dict,
    compress_args: dict,
    output: Path,
    lm_eval_args: list[str],
    log=print,
    model: str = "trust-hf",
    redactor: Redactor | None = None,
) -> list[Path]:
    """Evaluate every setting not done yet; the run folders, in the order of `settings`. Lines logged
    and markers go through `redactor`: the commands carry `--model_args`, tokens included."""
    redactor, printer = redactor or Redactor(), log

    def log(text: str) -> None:
        printer(redactor.text(text))

    started = time.monotonic()
    folders = []
    for index, setting in enumerate(settings, 1):
        check_precision(folders)
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
        mark_done(run_dir, setting, command, time.monotonic() - began, redactor)
        log(f"{head}: finished in {_clock(time.monotonic() - began)}")
    check_precision(folders)
    log(f"sweep: {len(settings)} settings evaluated in {_clock(time.monotonic() - started)} ({output})")
    return folders


def check_vllm_env() -> None:
    """`--model trust-vllm` needs vLLM here or the vLLM environment: said before any setting runs."""
    import importlib.util

    from lm_eval_trust import vllm_env

    if importlib.util.find_spec("vllm") is None:
        reason = vllm_env.problem(vllm_env.location())
        if reason:
            raise SweepError(reason)


def check_report_args(args: argparse.Namespace) -> None:
    """What the report and every run would refuse hours in, refused now."""
    from lm_eval_trust import report

    if not [t for t in args.tasks.split(",") if t.strip()]:
        raise SweepError(f"--tasks {args.tasks!r} names no task; give tasks or the group, e.g. --tasks trust")
    try:
        report.check_bootstrap(args.bootstrap_iters, 0)
    except report.ReportError as err:
        raise SweepError(str(err)) from None


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
    """Secrets on the command line (or in the environment) are redacted from all it prints and writes."""
    redactor = Redactor(env_secrets() | argv_secrets(argv))
    with redactor.streams():
        return _sweep_main(argv, redactor)


def _sweep_main(argv: list[str], redactor: Redactor) -> int:
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
        check_report_args(args)
        if args.model == "trust-vllm":
            check_vllm_env()
        output = Path(args.output_path)
        report_dir = Path(args.report_dir) if args.report_dir else output / "report"
        writable_folder(output, "--output_path")
        writable_folder(report_dir, "--report_dir" if args.report_dir else "the report folder")
        with output_lock(output, redactor.text(shlex.join(["lm-eval-trust", "sweep", *argv]))):
            return _sweep_and_report(
                args, settings, base_args, compress_args, lm_eval_args, report_dir, redactor
            )
    except (SweepError, CompressionError, FolderError) as err:
        print(f"lm-eval-trust sweep: error: {err}", file=sys.stderr)
        return 2


def _sweep_and_report(
    args, settings, base_args, compress_args, lm_eval_args, report_dir: Path, redactor: Redactor
) -> int:
    output = Path(args.output_path)
    try:
        folders = run_sweep(
            settings,
            base_args,
            compress_args,
            output,
            ["--tasks", args.tasks, *lm_eval_args],
            model=args.model,
            redactor=redactor,
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
    except KeyboardInterrupt:
        print(
            f"lm-eval-trust sweep: interrupted while writing the report (the evaluations are done); write it "
            f"with `lm-eval-trust report {output} -o {report_dir}`",
            file=sys.stderr,
        )
        return 130
    print(f"sweep: report written to {path}")
    return 0
