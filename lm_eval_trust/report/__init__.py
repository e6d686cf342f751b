"""`lm-eval-trust report`: how trust changed under compression, against the dense baseline.

Reads lm-eval results JSON files (and the sample logs beside them), one model per fingerprint,
refuses runs that cannot be compared with the baseline (other documents, settings or base model), and
writes a Markdown (and optionally HTML) report with the eight dimension scores, their mean, any
other task's main metric, refusal rates, the change against the baseline with a paired bootstrap
95% interval recomputed from the per-sample records, two PNG figures, and the DecodingTrust
leaderboard's CSV/JSON, each score with the documents and scenarios it stands on.

Modules: `runs` reads the files, `comparable` checks the runs match, `coverage` reads what each score
covers, `comparison` computes every number, `render` writes the text formats, `figures` draws the PNGs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from lm_eval_trust import atomic, stats
from lm_eval_trust.report.comparable import check_comparable
from lm_eval_trust.report.comparison import compare
from lm_eval_trust.report.figures import compression_figure, radar_figure
from lm_eval_trust.report.render import write_html, write_leaderboard, write_markdown
from lm_eval_trust.report.runs import ReportError, choose_baseline, load_runs

FORMATS = ("markdown", "html", "leaderboard")


def write_report(
    paths: Sequence[Path],
    out_dir: Path,
    baseline: str | None = None,
    formats: Sequence[str] = ("markdown",),
    bootstrap_iters: int = stats.DEFAULT_ITERS,
    seed: int = stats.DEFAULT_SEED,
) -> Path:
    """Write the report files into `out_dir`; returns the main file (report.md, else the first written).

    Always writes `report.json` (every number of the report); `markdown` and `html` also write
    `radar.png` and `compression.png`; `leaderboard` writes `leaderboard.csv` and `leaderboard.json`.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ReportError(f"unknown --format {unknown}; choose from {', '.join(FORMATS)}")
    if bootstrap_iters < 1:
        raise ReportError(f"--bootstrap_iters {bootstrap_iters} must be at least 1")
    runs = load_runs(paths)
    base = choose_baseline(runs, baseline)
    check_comparable(runs, base)
    comparison = compare(runs, base, bootstrap_iters, seed)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ReportError(f"--output {out_dir}: cannot make the folder ({err}); pick another") from err
    atomic.write_text(out_dir / "report.json", json.dumps(comparison, indent=2, allow_nan=False))
    written = []
    figures = []
    if "markdown" in formats or "html" in formats:
        figures = [radar_figure(comparison, out_dir / "radar.png").name]
        figures.append(compression_figure(comparison, out_dir / "compression.png").name)
    if "markdown" in formats:
        written.append(write_markdown(comparison, out_dir, figures))
    if "html" in formats:
        written.append(write_html(comparison, out_dir, figures))
    if "leaderboard" in formats:
        written.append(write_leaderboard(comparison, out_dir))
    return written[0] if written else out_dir / "report.json"


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
        "--bootstrap_iters", type=int, default=stats.DEFAULT_ITERS, help="bootstrap replicates (default 1000)"
    )
    parser.add_argument("--seed", type=int, default=stats.DEFAULT_SEED, help="bootstrap seed (default 0)")
    args = parser.parse_args(argv)
    try:
        path = write_report(
            args.results, args.output, args.baseline, args.format, args.bootstrap_iters, args.seed
        )
    except ReportError as err:
        print(f"lm-eval-trust report: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
