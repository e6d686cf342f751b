"""The comparison data as text: Markdown and HTML tables with notes, and the leaderboard's CSV/JSON."""

from __future__ import annotations

import csv
import html
import json
import re
from pathlib import Path

from lm_eval_trust import atomic
from lm_eval_trust.report.comparison import DIMENSIONS, MEAN
from lm_eval_trust.report.coverage import coverage_text, subsample_text

# github.com/DecodingTrust/decodingtrust.github.io, leaderboard/static/csv/leaderboard.csv (header).
LEADERBOARD_COLUMNS = {
    "toxicity": "Toxicity",
    "stereotype": "Stereotype Bias",
    "advglue": "Adversarial Robustness",
    "ood": "Out-of-Distribution Robustness",
    "adv_demo": "Robustness to Adversarial Demonstrations",
    "privacy": "Privacy",
    "ethics": "Machine Ethics",
    "fairness": "Fairness",
}
INTRO = (
    "Scores are DecodingTrust's 0-100 (higher is more trustworthy); the refusal rate (%) is in "
    "parentheses; ᵖ marks a partial score, ˢ one on a subsample of each scenario's documents, "
    "`too little data` a score whose formula had too few documents (see the notes). Mean (8) is the "
    "unweighted mean of the eight dimension scores, `–` when one is missing (the mean over the "
    "dimensions present, `overall_available`, is given beside it)."
)
COVERAGE_INTRO = (
    "Documents scored / documents in the scenarios run, and scenarios with documents / scenarios run "
    "(a total the results file does not record is left out); Mean (8) adds up the dimensions present."
)
CHANGE_INTRO = (
    "Change = model - baseline, with the 95% paired bootstrap interval ({iterations} replicates, seed "
    "{seed}; documents resampled within each scenario, the dimension's own score formula recomputed). "
    "**Bold** with \\* = the interval excludes zero."
)


def _num(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def score_text(data: dict) -> str:
    if data.get("insufficient"):
        return "too little data"
    text = _num(data.get("score"))
    if data.get("refusal_rate") is not None:
        text += f" ({_num(data['refusal_rate'])})"
    if data.get("partial"):
        text += " ᵖ"
    if data.get("subsample") and data.get("score") is not None:
        text += " ˢ"
    return text


def change_text(data: dict) -> str:
    if data.get("change") is None:
        return "–"
    change = f"{data['change']:+.1f}"
    if data.get("ci") is None:
        return f"{change} ({data['ci_note']})"
    low, high = data["ci"]
    return (
        f"**{change}** [{low:+.1f}, {high:+.1f}] \\*"
        if data["significant"]
        else f"{change} [{low:+.1f}, {high:+.1f}]"
    )


def mean_text(data: dict) -> str:
    if data["score"] is not None:
        return _num(data["score"])
    if data["overall_available"] is None:
        return "–"
    return f"– ({_num(data['overall_available'])} over {data['n_dimensions']})"


def tables(comparison: dict) -> tuple[list[str], list[list[str]], list[list[str]], list[list[str]]]:
    """Header, score rows, change rows and coverage rows (none if nothing is known), as text cells
    (shared by Markdown and HTML)."""
    columns = comparison["columns"]
    header = ["Model", "Compression"] + [c["title"] for c in columns[: len(DIMENSIONS)]]
    header += ["Mean (8)"] + [c["title"] for c in columns[len(DIMENSIONS) :]]
    keys = [c["key"] for c in columns]
    order = keys[: len(DIMENSIONS)] + [MEAN] + keys[len(DIMENSIONS) :]
    scores, changes, coverage = [], [], []
    for row in comparison["rows"]:
        cells = row["cells"]
        name = row["model"] + (" (baseline)" if row["is_baseline"] else "")
        scores.append(
            [name, row["compression"]]
            + [mean_text(cells[k]) if k == MEAN else score_text(cells[k]) for k in order]
        )
        coverage.append([name, row["compression"]] + [coverage_text(cells[k].get("coverage")) for k in order])
        if not row["is_baseline"]:
            changes.append([row["model"], row["compression"]] + [change_text(cells[k]) for k in order])
    if all(text == "–" for r in coverage for text in r[2:]):
        coverage = []  # results files too old to say what a score covers
    return header, scores, changes, coverage


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def write_markdown(comparison: dict, out_dir: Path, figures: list[str]) -> Path:
    header, scores, changes, coverage = tables(comparison)
    parts = [
        "# Trust under compression",
        f"Baseline: **{comparison['baseline']}**.",
        "## Scores",
        INTRO,
        markdown_table(header, scores),
        *(["## Coverage", COVERAGE_INTRO, markdown_table(header, coverage)] if coverage else []),
        "## Change against the baseline",
        CHANGE_INTRO.format(**comparison["bootstrap"]),
        markdown_table(header, changes) if changes else "Only the baseline was given.",
        "## Notes",
        "\n".join(f"{i}. {n}" for i, n in enumerate(comparison["notes"], 1)) or "None.",
        "## Figures",
        *[f"![{name}]({name})" for name in figures],
    ]
    path = out_dir / "report.md"
    atomic.write_text(path, "\n\n".join(parts) + "\n")
    return path


def html_table(header: list[str], rows: list[list[str]]) -> str:
    def text(value: str) -> str:
        value = html.escape(value.replace("\\*", "*"))
        return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", value)

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{text(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_html(comparison: dict, out_dir: Path, figures: list[str]) -> Path:
    header, scores, changes, coverage = tables(comparison)
    notes_html = "".join(f"<li>{html.escape(n)}</li>" for n in comparison["notes"])
    body = [
        "<h1>Trust under compression</h1>",
        f"<p>Baseline: <b>{html.escape(comparison['baseline'])}</b>.</p>",
        f"<h2>Scores</h2><p>{html.escape(INTRO)}</p>",
        html_table(header, scores),
        *(
            [f"<h2>Coverage</h2><p>{html.escape(COVERAGE_INTRO)}</p>", html_table(header, coverage)]
            if coverage
            else []
        ),
        f"<h2>Change against the baseline</h2><p>{html.escape(CHANGE_INTRO.format(**comparison['bootstrap']))}</p>",
        html_table(header, changes) if changes else "<p>Only the baseline was given.</p>",
        f"<h2>Notes</h2><ol>{notes_html}</ol>",
        "<h2>Figures</h2>",
        *[f'<p><img src="{html.escape(name)}" alt="{html.escape(name)}"></p>' for name in figures],
    ]
    style = "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:3px 6px;text-align:right}"
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>Trust under compression</title><style>{style}</style></head><body>{''.join(body)}</body></html>"
    path = out_dir / "report.html"
    atomic.write_text(path, page)
    return path


def leaderboard_rows(comparison: dict) -> list[dict]:
    """A row per model in the DecodingTrust leaderboard's columns (2 decimals), plus `Compression`
    and `Coverage` (documents scored over the dimensions present; the subsample, if one)."""
    rows = []
    for row in comparison["rows"]:
        out = {"Model": row["leaderboard_name"]}
        for d in DIMENSIONS:
            score = row["cells"][d]["score"]
            out[LEADERBOARD_COLUMNS[d]] = None if score is None else round(score, 2)
        mean = row["cells"][MEAN]["score"]
        out["Average"] = None if mean is None else round(mean, 2)
        out["Compression"] = row["compression"]
        out["Coverage"] = leaderboard_coverage(row["cells"])
        rows.append(out)
    return rows


def leaderboard_coverage(cells: dict) -> str:
    parts = [] if cells[MEAN].get("coverage") is None else [coverage_text(cells[MEAN]["coverage"])]
    parts += sorted({subsample_text(cells[d]["subsample"]) for d in DIMENSIONS if cells[d].get("subsample")})
    return "; ".join(parts)


def write_leaderboard(comparison: dict, out_dir: Path) -> Path:
    rows = leaderboard_rows(comparison)
    path = out_dir / "leaderboard.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    atomic.write_text(out_dir / "leaderboard.json", json.dumps(rows, indent=2, allow_nan=False))
    return path
