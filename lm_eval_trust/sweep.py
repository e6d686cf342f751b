"""`lm-eval-trust sweep`: one base model, a list of compression settings, one evaluation per setting.

The sweep is a plan of units (`lm_eval_trust.cluster`): by default one `lm-eval-trust run` process
per setting (a model's memory is freed when it ends) into `OUTPUT/<setting>/`, with `--log_samples`
and a per-setting `--use_cache`; with `--shards` or `--unit_tokens`, compress and evaluate-shard
units merged per setting. `--executor` runs them here, on Ray or on Slurm. A unit is done when its
marker matches the unit the plan makes now, so running the same sweep again after an interruption
runs only what is missing; an interrupted unit reuses the requests it had answered and the
compressed checkpoint (the compression cache). The output folder is checked writable before any
work and locked for the sweep's length, so a second sweep into it stops at once, naming the first.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lm_eval_trust.cluster import executors, merge, units
from lm_eval_trust.cluster.units import Unit
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


def computes_in(run_dir: Path) -> str | None:
    """The precision a finished setting's weights computed in, as its results record it."""
    for path in sorted(run_dir.rglob("results_*.json")):
        try:
            return (json.loads(path.read_text()).get("config") or {}).get("computes_in")
        except (OSError, ValueError):
            continue
    return None


def check_precision(planned: list[Unit]) -> None:
    """Every unit run so far computes in the first one's precision; else the sweep stops before the
    rest run, since the report would mix precision with compression (and refuse)."""
    known = [(u.label, p) for u in planned if u.kind == "evaluate" and (p := computes_in(Path(u.folder)))]
    odd = next(((name, p) for name, p in known[1:] if p != known[0][1]), None)
    if odd:
        raise SweepError(
            f"sweep: {odd[0]} computes in {odd[1]}, {known[0][0]} in {known[0][1]}: a change between them "
            f"would mix precision with compression. Give one dtype= in --model_args (e.g. "
            f"dtype={known[0][1]}) and run the same sweep again"
        )


def plan_units(
    settings, base_args, compress_args, output, lm_eval_args, model, redactor, shards=None, unit_tokens=None
):
    """The sweep's units, one per setting or, sharded, compress and evaluate units per setting."""

    def shown(command) -> str:
        return redactor.text(shlex.join(command[1:]))

    commands = {
        s.name: setting_command(s, base_args, compress_args, output / s.name, lm_eval_args, model)
        for s in settings
    }
    if not (shards or unit_tokens):
        return [units.setting_unit(s.name, commands[s.name], output / s.name, shown) for s in settings], {}
    works = units.task_work(units.option(lm_eval_args, "--tasks"), lm_eval_args)
    groups = units.shard_groups(works, shards, unit_tokens)
    planned = []
    for s in settings:
        compress = None if s.is_dense else compress_command(s, base_args, compress_args)
        planned += units.sharded_units(s.name, commands[s.name], compress, output, works, groups, shown)
    return planned, {w.task: w.options for w in works}


def compress_command(setting: Setting, base_args: dict, compress_args: dict) -> list[str]:
    args = {**base_args, **args_for(setting.spec.compress, compress_args), **setting.model_args}
    return [sys.executable, "-m", "lm_eval_trust.cli", "compress", "--model_args", format_model_args(args)]


def run_sweep(
    settings: list[Setting],
    base_args: dict,
    compress_args: dict,
    output: Path,
    lm_eval_args: list[str],
    log=print,
    model: str = "trust-hf",
    redactor: Redactor | None = None,
    cluster: argparse.Namespace | None = None,
) -> list[Path]:
    """Run every unit not done yet on the executor `cluster` names (here, in order, by default) and
    merge sharded settings; the setting folders, in the order of `settings`. Lines logged and
    markers go through `redactor`: the commands carry `--model_args`, tokens included."""
    redactor, printer = redactor or Redactor(), log
    cluster = cluster or argparse.Namespace(executor="local", shards=None, unit_tokens=None, retries=None)

    def log(text: str) -> None:
        printer(redactor.text(text))

    started = time.monotonic()
    planned, options = plan_units(
        settings,
        base_args,
        compress_args,
        output,
        lm_eval_args,
        model,
        redactor,
        cluster.shards,
        cluster.unit_tokens,
    )
    units.write_manifest(output, planned)
    engine = executors.engine_options(cluster, model, base_args, lm_eval_args, output)
    if cluster.executor == "local":
        engine["before"] = lambda: check_precision([u for u in planned if u.is_done()])
    failures = executors.execute(planned, cluster.executor, executors.retries(cluster), log, **engine)
    folders = [output / s.name for s in settings]
    broken = {f.unit.setting for f in failures}
    if options:
        for folder in folders:
            if folder.name not in broken:
                merge.merge_once(folder, [u for u in planned if u.setting == folder.name], options, log)
    if failures:
        raise SweepError(
            f"{len(failures)} units failed:\n{executors.failure_table(failures)}\nFix the cause and run the same "
            "command again: it runs only the units not done."
        )
    check_precision([u for u in planned if u.kind == "evaluate"])
    log(
        f"sweep: {len(settings)} settings evaluated in {executors.clock(time.monotonic() - started)} ({output})"
    )
    return folders


def check_vllm_env() -> None:
    """`--model trust-vllm` needs vLLM here or the vLLM environment: said before any setting runs."""
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
    executors.add_arguments(parser)
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
        executors.check_arguments(args)
        if (args.shards or args.unit_tokens) and units.option(lm_eval_args, "--samples", "-E"):
            raise SweepError(
                "--samples is set by the sweep for each shard; drop it, or drop --shards/--unit_tokens"
            )
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
    except (SweepError, CompressionError, FolderError, units.UnitError) as err:
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
            cluster=args,
        )
    except units.UnitError as err:  # the plan or the executor's options, refused before any unit ran
        print(f"lm-eval-trust sweep: error: {err}", file=sys.stderr)
        return 2
    except (SweepError, merge.MergeError) as err:
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
