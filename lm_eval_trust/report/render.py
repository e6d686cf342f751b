"""The comparison data as text: Markdown and HTML tables with notes, and the leaderboard's CSV/JSON.

Both table formats render the same cells (`tables`), each escaping names its own way; the files go
into the folder `write_report` stages, so they are plain writes.
"""

from __future__ import annotations

import csv
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

from lm_eval_trust.dimension import registered
from lm_eval_trust.report.comparison import DIMENSIONS, MEAN
from lm_eval_trust.report.coverage import coverage_text, subsample_text

# Each dimension's column of DecodingTrust's leaderboard (declared in its folder).
LEADERBOARD_COLUMNS = {key: module.LEADERBOARD_COLUMN for key, module in registered().items()}
MEAN_TITLE = f"Mean ({len(DIMENSIONS)})"


@dataclass(frozen=True)
class Span:
    """Plain text with a style (`bold` or `code`): each format escapes and styles it its own way, so a
    name holding `|`, `*` or `<b>` stays that text, in its own cell, in every format."""

    text: str
    style: str = ""


Text = tuple[Span, ...]


def plain(text) -> Text:
    return (Span(str(text)),)


INTRO = (
    Span(
        "Scores are DecodingTrust's 0-100 (higher is more trustworthy); the refusal rate (%) is in "
        "parentheses; ᵖ marks a partial score, ˢ one on a subsample of each scenario's documents, "
    ),
    Span("too little data", "code"),
    Span(
        f" a score whose formula had too few documents (see the notes). {MEAN_TITLE} is the unweighted "
        "mean of the dimension scores, "
    ),
    Span("–", "code"),
    Span(" when one is missing (the mean over the dimensions present, "),
    Span("overall_available", "code"),
    Span(", is given beside it)."),
)
COVERAGE_INTRO = plain(
    "Documents scored / documents in the scenarios run, and scenarios with documents / scenarios run "
    f"(a total the results file does not record is left out); {MEAN_TITLE} adds up the dimensions present."
)


def change_intro(bootstrap: dict) -> Text:
    return (
        Span(
            f"Change = model - baseline, with the 95% paired bootstrap interval ({bootstrap['iterations']} "
            f"replicates, seed {bootstrap['seed']}; documents resampled within each scenario, the "
            "dimension's own score formula recomputed). "
        ),
        Span("Bold", "bold"),
        Span(" with * = the interval excludes zero."),
    )


# -- cells -----------------------------------------------------------------------------------------


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


def change_cell(data: dict) -> Text:
    """The change, its interval, and (bold, starred) whether the interval excludes zero."""
    if data.get("change") is None:
        return plain("–")
    change = f"{data['change']:+.1f}"
    if data.get("ci") is None:
        return plain(f"{change} ({data['ci_note']})")
    low, high = data["ci"]
    if data["significant"]:
        return Span(change, "bold"), Span(f" [{low:+.1f}, {high:+.1f}] *")
    return plain(f"{change} [{low:+.1f}, {high:+.1f}]")


def mean_text(data: dict) -> str:
    if data["score"] is not None:
        return _num(data["score"])
    if data["overall_available"] is None:
        return "–"
    return f"– ({_num(data['overall_available'])} over {data['n_dimensions']})"


Table = tuple[list[Text], list[list[Text]]]


def tables(comparison: dict) -> tuple[Table, Table | None, Table | None]:
    """Scores, changes (None with only the baseline) and coverage (None if nothing is known), as header
    and rows of cells: the one source of both Markdown and HTML."""
    columns = comparison["columns"]
    titles = [c["title"] for c in columns[: len(DIMENSIONS)]] + [MEAN_TITLE]
    header = [
        plain(t) for t in ["Model", "Compression", *titles, *(c["title"] for c in columns[len(DIMENSIONS) :])]
    ]
    keys = [c["key"] for c in columns]
    order = keys[: len(DIMENSIONS)] + [MEAN] + keys[len(DIMENSIONS) :]
    scores, changes, coverage = [], [], []
    for row in comparison["rows"]:
        cells = row["cells"]
        name = plain(row["model"] + (" (baseline)" if row["is_baseline"] else ""))
        scores.append(
            [name, plain(row["compression"])]
            + [plain(mean_text(cells[k]) if k == MEAN else score_text(cells[k])) for k in order]
        )
        coverage.append(
            [name, plain(row["compression"])]
            + [plain(coverage_text(cells[k].get("coverage"))) for k in order]
        )
        if not row["is_baseline"]:
            changes.append(
                [plain(row["model"]), plain(row["compression"])] + [change_cell(cells[k]) for k in order]
            )
    known = any(cell != plain("–") for r in coverage for cell in r[2:])  # older results files do not say
    return (header, scores), (header, changes) if changes else None, (header, coverage) if known else None


def figure_lines(figures: list[str], skipped: list[str]) -> list[Text]:
    """A line per figure not drawn, or one saying there are none."""
    if not figures:
        return [plain("No figures: no model has a trust dimension score to draw.")]
    return [plain(f"{name}: not drawn, no scored point to plot.") for name in skipped]


# -- Markdown --------------------------------------------------------------------------------------

# Characters Markdown (GFM) may read as syntax, `\`-escaped: `[` (no link can open, so `]` is
# plain), and `_` only where it can start or end emphasis (not inside a word: `gpt4_prompts`).
MARKDOWN_ACTIVE = re.compile(r"[\\`*\[<>|&~]|(?<![^\W_])_|_(?![^\W_])")


def markdown_escape(text: str) -> str:
    """`text` as literal Markdown on one line (a line break would end a table row)."""
    text = re.sub(r"\s*[\r\n]+\s*", " ", str(text))
    return MARKDOWN_ACTIVE.sub(lambda m: "\\" + m.group(0), text)


def to_markdown(text: Text) -> str:
    out = []
    for span in text:
        escaped = markdown_escape(span.text)
        if span.style == "bold":
            out.append(f"**{escaped}**")
        elif span.style == "code" and "`" not in span.text:
            out.append(f"`{span.text}`")
        else:
            out.append(escaped)
    return "".join(out)


def markdown_table(table: Table) -> str:
    header, rows = table
    lines = ["| " + " | ".join(map(to_markdown, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(to_markdown, r)) + " |" for r in rows]
    return "\n".join(lines)


def write_markdown(comparison: dict, out_dir: Path, figures: list[str], skipped: list[str] = ()) -> Path:
    scores, changes, coverage = tables(comparison)
    parts = [
        "# Trust under compression",
        to_markdown((Span("Baseline: "), Span(comparison["baseline"], "bold"), Span("."))),
        "## Scores",
        to_markdown(INTRO),
        markdown_table(scores),
        *(["## Coverage", to_markdown(COVERAGE_INTRO), markdown_table(coverage)] if coverage else []),
        "## Change against the baseline",
        to_markdown(change_intro(comparison["bootstrap"])),
        markdown_table(changes) if changes else "Only the baseline was given.",
        "## Notes",
        "\n".join(f"{i}. {markdown_escape(n)}" for i, n in enumerate(comparison["notes"], 1)) or "None.",
        "## Figures",
        *[f"![{name}]({name})" for name in figures],
        *map(to_markdown, figure_lines(figures, list(skipped))),
    ]
    path = out_dir / "report.md"
    path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    return path


# -- HTML ------------------------------------------------------------------------------------------


def to_html(text: Text) -> str:
    tags = {"bold": "b", "code": "code"}
    out = []
    for span in text:
        escaped = html.escape(span.text)
        tag = tags.get(span.style)
        out.append(f"<{tag}>{escaped}</{tag}>" if tag else escaped)
    return "".join(out)


def html_table(table: Table) -> str:
    header, rows = table
    head = "".join(f"<th>{to_html(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{to_html(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_html(comparison: dict, out_dir: Path, figures: list[str], skipped: list[str] = ()) -> Path:
    scores, changes, coverage = tables(comparison)
    notes_html = "".join(f"<li>{html.escape(n)}</li>" for n in comparison["notes"])
    body = [
        "<h1>Trust under compression</h1>",
        f"<p>Baseline: <b>{html.escape(comparison['baseline'])}</b>.</p>",
        f"<h2>Scores</h2><p>{to_html(INTRO)}</p>",
        html_table(scores),
        *([f"<h2>Coverage</h2><p>{to_html(COVERAGE_INTRO)}</p>", html_table(coverage)] if coverage else []),
        f"<h2>Change against the baseline</h2><p>{to_html(change_intro(comparison['bootstrap']))}</p>",
        html_table(changes) if changes else "<p>Only the baseline was given.</p>",
        f"<h2>Notes</h2><ol>{notes_html}</ol>",
        "<h2>Figures</h2>",
        *[f'<p><img src="{html.escape(name)}" alt="{html.escape(name)}"></p>' for name in figures],
        *[f"<p>{to_html(line)}</p>" for line in figure_lines(figures, list(skipped))],
    ]
    style = "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:3px 6px;text-align:right}"
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Trust under compression</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>"
    )
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
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
    (out_dir / "leaderboard.json").write_text(json.dumps(rows, indent=2, allow_nan=False), encoding="utf-8")
    return path
