"""`lm-eval-trust report`: how trust changed under compression, against the dense baseline.

Reads lm-eval results JSON files (and the sample logs beside them), one model per fingerprint,
refuses runs that cannot be compared with the baseline (other documents, settings or base model), and
writes a Markdown (and optionally HTML) report with the eight dimension scores, their mean, any
other task's main metric, refusal rates, the change against the baseline with a paired bootstrap
95% interval recomputed from the per-sample records, two PNG figures, and the DecodingTrust
leaderboard's CSV/JSON, each score with the documents and scenarios it stands on.

Modules: `runs` reads the files, `comparable` checks the runs match, `coverage` reads what each score
covers, `comparison` computes every number, `render` writes the text formats, `figures` draws the PNGs,
`output` swaps the new files in for the old together.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from lm_eval_trust import stats
from lm_eval_trust.report.comparable import check_comparable
from lm_eval_trust.report.comparison import compare
from lm_eval_trust.report.figures import compression_figure, radar_figure
from lm_eval_trust.report.output import REPORT_FILES, Interrupted, check_output, staged
from lm_eval_trust.report.render import write_html, write_leaderboard, write_markdown
from lm_eval_trust.report.runs import ReportError, choose_baseline, load_runs

__all__ = [
    "FORMATS",
    "MIN_BOOTSTRAP_ITERS",
    "REPORT_FILES",
    "ReportError",
    "check_bootstrap",
    "report_main",
    "write_report",
]

FORMATS = ("markdown", "html", "leaderboard")
# Fewer replicates give intervals too coarse to trust: with 1, every interval is its point estimate
# and every change "significant".
MIN_BOOTSTRAP_ITERS = 100


def check_bootstrap(iters: int, seed: int) -> None:
    """Refuse too few bootstrap replicates, or a seed numpy cannot take (shared with `sweep`)."""
    if iters < MIN_BOOTSTRAP_ITERS:
        raise ReportError(
            f"--bootstrap_iters {iters} is too few replicates for a 95% interval; use at least "
            f"{MIN_BOOTSTRAP_ITERS} (default {stats.DEFAULT_ITERS})"
        )
    if seed < 0:
        raise ReportError(f"--seed {seed}: a bootstrap seed is a whole number >= 0")


def write_report(
    paths: Sequence[Path],
    out_dir: Path,
    baseline: str | None = None,
    formats: Sequence[str] = ("markdown",),
    bootstrap_iters: int = stats.DEFAULT_ITERS,
    seed: int = stats.DEFAULT_SEED,
) -> Path:
    """Write the report into `out_dir`; returns the main file (report.md, else the first written).

    Always writes `report.json` (every number of the report); `markdown` and `html` also write
    `radar.png` and `compression.png` (each when it has a scored point); `leaderboard` writes
    `leaderboard.csv` and `leaderboard.json`. The files replace `out_dir`'s together (`output.staged`).
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ReportError(f"unknown --format {unknown}; choose from {', '.join(FORMATS)}")
    check_bootstrap(bootstrap_iters, seed)
    out_dir = Path(out_dir)
    check_output(out_dir)
    runs = load_runs(paths)
    base = choose_baseline(runs, baseline)
    check_comparable(runs, base)
    comparison = compare(runs, base, bootstrap_iters, seed)
    written = []
    with staged(out_dir) as folder:
        (folder / "report.json").write_text(
            json.dumps(comparison, indent=2, allow_nan=False), encoding="utf-8"
        )
        figures, skipped = [], []
        if "markdown" in formats or "html" in formats:
            for name, draw in (("radar.png", radar_figure), ("compression.png", compression_figure)):
                (figures if draw(comparison, folder / name) else skipped).append(name)
        if "markdown" in formats:
            written.append(write_markdown(comparison, folder, figures, skipped))
        if "html" in formats:
            written.append(write_html(comparison, folder, figures, skipped))
        if "leaderboard" in formats:
            written.append(write_leaderboard(comparison, folder))
    return out_dir / (written[0].name if written else "report.json")


def report_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="lm-eval-trust report",
        description="Compare lm-eval results of compressed models against the dense baseline: scores with "
        "their coverage, changes with paired bootstrap 95%% intervals (needs --log_samples), figures, "
        "leaderboard rows. Every run must match the baseline in base model, documents, scenarios, "
        "samples per prompt, generation settings, seeds and data; a difference is an error naming it.",
    )
    parser.add_argument("results", nargs="+", type=Path, help="results_*.json files or folders holding them")
    parser.add_argument(
        "--output", "-o", type=Path, default=Path("report"), help="output folder (default: report)"
    )
    parser.add_argument(
        "--baseline",
        help="the baseline run: its label, model name, setting (e.g. dense) or a path to its results",
    )
    parser.add_argument(
        "--format",
        nargs="+",
        default=["markdown"],
        choices=FORMATS,
        help="markdown (report.md + PNG figures, default), html, leaderboard (CSV and JSON)",
    )
    parser.add_argument(
        "--bootstrap_iters",
        type=int,
        default=stats.DEFAULT_ITERS,
        help=f"bootstrap replicates (default {stats.DEFAULT_ITERS}, at least {MIN_BOOTSTRAP_ITERS})",
    )
    parser.add_argument(
        "--seed", type=int, default=stats.DEFAULT_SEED, help="bootstrap seed (default 0, >= 0)"
    )
    args = parser.parse_args(argv)
    had_report = args.output.is_dir() and any(args.output.iterdir())
    try:
        path = write_report(
            args.results, args.output, args.baseline, args.format, args.bootstrap_iters, args.seed
        )
    except ReportError as err:
        print(f"lm-eval-trust report: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        if isinstance(err, Interrupted):
            kept = f"{args.output} holds the new report"
        else:
            kept = f"{args.output} keeps its previous report" if had_report else "no report was written"
        print(f"lm-eval-trust report: interrupted; {kept}", file=sys.stderr)
        return 130
    print(f"wrote {path}")
    return 0
