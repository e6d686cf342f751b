"""`lm-eval-trust`: lm-eval's own CLI with our tasks and models, plus `tasks-dir` and `data`.

Every lm-eval form works unchanged (`run`, `ls`, `validate`, and the bare legacy form); this package's
tasks folder is put first on `--include_path` and `trust-hf` is registered before parsing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import logging
import sys
import time
from collections import Counter

from lm_eval_trust import TASKS_DIR, preflight
from lm_eval_trust import data as trust_data


def _perspective(path: str) -> str:
    for name, prefixes in trust_data.perspectives().items():
        if path.startswith(prefixes):
            return name
    return "other"


def data_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="lm-eval-trust data",
        description="Fetch DecodingTrust's data at the pinned commit, or verify a data root against the manifest.",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    fetch_p = sub.add_parser("fetch", help="download data files and check their git blob sha1")
    verify_p = sub.add_parser("verify", help="check a data root against the manifest")
    for p in (fetch_p, verify_p):
        p.add_argument(
            "--data_dir",
            help="data root (default: $TRUST_DATA_DIR, else the user cache "
            f"{trust_data.default_data_cache()})",
        )
        p.add_argument(
            "--only",
            nargs="+",
            metavar="PERSPECTIVE",
            help="limit to perspectives: a dimension's name (advglue, toxicity, ...) or its data folder's",
        )
    fetch_p.add_argument("--path", nargs="+", help="fetch these manifest paths only (as printed in errors)")
    fetch_p.add_argument(
        "--base_url", help="serve files from this URL instead of GitHub (a mirror of the data root)"
    )
    fetch_p.add_argument("--force", action="store_true", help="download again even if a verified copy exists")
    args = parser.parse_args(argv)
    root = trust_data.data_root(args.data_dir)
    try:
        if args.action == "fetch":
            manifest = trust_data.load_manifest()
            unknown = [p for p in args.path or [] if p not in manifest]
            if unknown:
                print(
                    f"error: --path {unknown} not in the manifest ({trust_data.MANIFEST_PATH})",
                    file=sys.stderr,
                )
                return 2
            if args.base_url and not args.base_url.startswith(("http://", "https://", "file://")):
                print(
                    f"error: --base_url {args.base_url!r} must be an http://, https:// or file:// URL",
                    file=sys.stderr,
                )
                return 2
            report = trust_data.fetch(
                root, only=args.only, paths=args.path, base_url=args.base_url, force=args.force
            )
            print(
                f"{root}: {len(report.fetched)} fetched, {len(report.present)} already present and verified, {len(report.failed)} failed"
            )
            for path, why in report.failed.items():
                print(f"  FAILED {path}: {why}", file=sys.stderr)
            return 1 if report.failed else 0
        report = trust_data.verify(root, only=args.only)
    except trust_data.DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"{root}: {len(report.ok)} verified, {len(report.missing)} missing, {len(report.mismatched)} corrupted"
    )
    for perspective, n in sorted(Counter(_perspective(p) for p in report.missing).items()):
        print(
            f"  missing in {perspective}: {n} (fetch with `{trust_data.fetch_command(root, only=perspective)}`)"
        )
    for path, got in report.mismatched.items():
        print(
            f"  CORRUPTED {path}: git blob sha1 {got}; re-fetch with "
            f"`{trust_data.fetch_command(root, path=path, force=True)}`",
            file=sys.stderr,
        )
    return 1 if report.mismatched else 0


def compress_main(argv: list[str]) -> int:
    """Make (or find in the cache) a compressed checkpoint without evaluating it."""
    from lm_eval_trust.compression import CompressionError, CompressionSpec, parse_model_args
    from lm_eval_trust.model_adapters import embedded
    from lm_eval_trust.model_adapters.trust_hf import compress_base

    parser = argparse.ArgumentParser(
        prog="lm-eval-trust compress",
        description="Compress a model as trust-hf would (same --model_args) and print the checkpoint path.",
    )
    parser.add_argument(
        "--model_args", required=True, help="e.g. pretrained=smollm2-135m-instruct,compress=gptq,bits=4"
    )
    args = parser.parse_args(argv)
    try:
        model_args = parse_model_args(args.model_args, "--model_args")
        # llm-compressor logs to stdout; keep stdout for the result, so scripts can parse it.
        with contextlib.redirect_stdout(sys.stderr):
            spec = CompressionSpec.pop_from(model_args)
            if spec.compress == "none" or "pretrained" not in model_args:
                raise CompressionError("--model_args needs pretrained=... and compress=<method>")
            base = embedded.resolve(str(model_args["pretrained"]))
            path, metadata = compress_base(base, spec, model_args.get("save_dir"))
    except (CompressionError, embedded.ModelResolutionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({"checkpoint": path, **metadata}, indent=2))
    return 0


def lm_eval_main() -> None:
    from lm_eval._cli import HarnessCLI
    from lm_eval.utils import setup_logging

    import lm_eval_trust.model_adapters.scripted  # noqa: F401  (registers trust-scripted)
    import lm_eval_trust.model_adapters.trust_hf  # noqa: F401  (registers trust-hf)

    if importlib.util.find_spec("vllm") is not None:
        import lm_eval_trust.model_adapters.trust_vllm  # noqa: F401  (registers trust-vllm)
    from lm_eval_trust.compression import CompressionError
    from lm_eval_trust.dimension import TaskConfigError
    from lm_eval_trust.model_adapters.embedded import ModelResolutionError
    from lm_eval_trust.scoring.toxicity import ScorerError
    from lm_eval_trust.secrets import Redactor, env_secrets, secret_values

    redactor = Redactor(env_secrets())
    redactor.install()
    setup_logging()
    # lm-eval configures only its own logger; ours (compression, caches, batch sizes) logs beside it.
    ours, theirs = logging.getLogger("lm_eval_trust"), logging.getLogger("lm_eval")
    ours.setLevel(theirs.level)
    ours.handlers, ours.propagate = list(theirs.handlers), False
    cli = HarnessCLI()
    args = cli.parse_args()
    for options in (getattr(args, "model_args", None), getattr(args, "metadata", None)):
        redactor.add(secret_values(options if isinstance(options, dict) else {}))
    try:
        preflight.check(args)
        preflight.prepare(args)
    except (preflight.PreflightError, trust_data.DataError, ScorerError) as err:
        print(f"lm-eval-trust: error: {err}", file=sys.stderr)
        sys.exit(2)
    if hasattr(args, "include_path"):
        extra = args.include_path
        args.include_path = [str(TASKS_DIR)] + ([extra] if extra else [])
    if getattr(args, "command", None) == "ls" and args.what is None:
        args.what = "tasks"  # lm-eval prints its help here; listing is what `ls` is for
    started = time.time()
    try:
        cli.execute(args)
    except (
        trust_data.DataError,
        TaskConfigError,
        ModelResolutionError,
        ScorerError,
        CompressionError,
    ) as err:
        print(f"lm-eval-trust: error: {err}", file=sys.stderr)
        sys.exit(2)
    ran = getattr(args, "command", None) in (None, "run") and getattr(args, "tasks", None)
    if ran and getattr(args, "output_path", None) and not preflight.results_written(args, started - 1):
        print(
            f"lm-eval-trust: error: the evaluation finished but no results file was written under "
            f"{preflight.output_dir(args.output_path)} (see lm-eval's warning above); nothing was saved",
            file=sys.stderr,
        )
        sys.exit(1)


EXTRA_COMMANDS = """lm-eval-trust: lm-eval's CLI with the trust tasks and the trust-hf model, plus:
  lm-eval-trust tasks-dir                  print the installed tasks folder (for lm_eval --include_path)
  lm-eval-trust data {fetch,verify} ...    get or check DecodingTrust's data (see `data -h`)
  lm-eval-trust scorer-agreement ...       measure the toxicity scorers against Perspective's labels
  lm-eval-trust compress --model_args ...  make a compressed checkpoint (gptq, awq, magnitude, sparsegpt, wanda)
  lm-eval-trust plan --tasks trust ...     size a run before it: documents, generations, tokens, error bars
  lm-eval-trust sweep --model_args ...     evaluate a model under several compression settings, then report
  lm-eval-trust report RESULTS...          compare results against the dense baseline (tables, figures, CIs)
  lm-eval-trust rescore SAMPLES...         recompute trust scores from sample logs, without a model
  lm-eval-trust vllm-env                   create the environment `--model trust-vllm` runs in
"""


# Subcommands of ours (the rest is lm-eval's CLI): name -> "module:function(argv) -> exit code".
SUBCOMMANDS = {
    "data": "lm_eval_trust.cli:data_main",
    "compress": "lm_eval_trust.cli:compress_main",
    "scorer-agreement": "lm_eval_trust.scoring.agreement:main",
    "plan": "lm_eval_trust.plan:plan_main",
    "sweep": "lm_eval_trust.sweep:sweep_main",
    "report": "lm_eval_trust.report:report_main",
    "rescore": "lm_eval_trust.rescore:rescore_main",
    "vllm-env": "lm_eval_trust.vllm_env:vllm_env_main",
}


def main() -> None:
    argv = sys.argv[1:]
    if argv in ([], ["-h"], ["--help"]):
        print(EXTRA_COMMANDS)
    if argv[:1] == ["tasks-dir"]:
        print(TASKS_DIR)
        return
    if argv and argv[0] in SUBCOMMANDS:
        module, _, function = SUBCOMMANDS[argv[0]].partition(":")
        sys.exit(getattr(importlib.import_module(module), function)(argv[1:]))
    if wants_vllm(argv) and importlib.util.find_spec("vllm") is None:
        from lm_eval_trust import vllm_env

        try:
            vllm_env.hand_off(argv)
        except vllm_env.VLLMEnvError as err:
            print(f"lm-eval-trust: error: {err}", file=sys.stderr)
            sys.exit(2)
    lm_eval_main()


def wants_vllm(argv: list[str]) -> bool:
    """`--model trust-vllm` (either spelling) on the command line."""
    pairs = zip(argv, argv[1:], strict=False)
    return "--model=trust-vllm" in argv or any(a == "--model" and b == "trust-vllm" for a, b in pairs)


if __name__ == "__main__":
    main()
