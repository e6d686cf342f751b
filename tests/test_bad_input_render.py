"""Names and free text that must not change what a rendered table says, and figures with nothing to draw.

A model or folder name holding `|`, `*`, `<b>` or `$...$` is text in every format: one cell in
Markdown, escaped HTML, the raw name in CSV/JSON, a plain label in the PNGs.
"""

from __future__ import annotations

import csv
import html
import json
import math
from html.parser import HTMLParser

import pytest
from report_fixtures import (
    advglue_config,
    advglue_docs,
    advglue_samples,
    compression,
    trust_results,
    write_run,
)

from lm_eval_trust.report import write_report
from lm_eval_trust.report.render import markdown_escape

NAME = "ti|ny*<b>x_ `y` [z]"
FOLDER = "gp|tq*<b>"
DOCS = advglue_docs(10)
RIGHT = ["positive" if d["glue_task"] == "sst2" else "yes" for d in DOCS]
WRONG = ["negative" if d["glue_task"] == "sst2" else "yes" for d in DOCS]
FORMATS = ["markdown", "html", "leaderboard"]


def named_runs(root, name=NAME, folder=FOLDER):
    """A dense and a gptq run of model `name`, the gptq one in `folder` with a NaN (a note naming it)."""
    for sub, compress, advglue, answers, mini in (
        ("dense", None, 100.0, RIGHT, 0.5),
        (folder, compression("gptq", bits=4), 50.0, WRONG, math.nan),
    ):
        write_run(
            root / sub,
            name,
            compress,
            {
                "trust_advglue": trust_results("trust_advglue", advglue),
                "trust_toxicity": trust_results("trust_toxicity", 70.0),
                "mi|ni": {"alias": "mi|ni", "acc,none": mini},
            },
            {"trust_advglue": advglue_config(), "trust_toxicity": {"metadata": {}}},
            {"trust_advglue": advglue_samples(DOCS, answers)},
        )
    return root


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Each Markdown table's rows of cells, split on unescaped `|` and unescaped as GFM reads them."""
    tables, current = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            current = None
            continue
        cells, cell, chars = [], "", iter(line.strip()[1:])
        for char in chars:
            if char == "\\":
                cell += next(chars)
            elif char == "*":
                continue  # emphasis markup: every literal `*` is escaped
            elif char == "|":
                cells.append(cell.strip())
                cell = ""
            else:
                cell += char
        if set("".join(cells)) <= set("-"):
            continue  # the delimiter row
        if current is None:
            current = []
            tables.append(current)
        current.append(cells)
    return tables


class Cells(HTMLParser):
    """Tables of an HTML page as rows of (text, tags inside the cell)."""

    def __init__(self):
        super().__init__()
        self.tables, self.cell, self.tags = [], None, []

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell, self.tags = "", []
        elif self.cell is not None:
            self.tags.append(tag)

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append((self.cell, self.tags))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def test_markdown_escape_keeps_plain_text_plain():
    assert markdown_escape("a|b") == "a\\|b"
    assert markdown_escape("*x* `c` [l](u) <b> &amp; \\") == "\\*x\\* \\`c\\` \\[l](u) \\<b\\> \\&amp; \\\\"
    assert markdown_escape("gpt4_prompts _lead trail_") == "gpt4_prompts \\_lead trail\\_"
    assert markdown_escape("two\nlines") == "two lines"


def test_names_with_table_syntax_stay_in_their_cell_in_every_format(tmp_path):
    out = tmp_path / "out"
    write_report([named_runs(tmp_path / "runs")], out, formats=FORMATS, bootstrap_iters=100)
    header = ["Model", "Compression", "Toxicity", "Stereotype", "AdvGLUE++", "OOD", "Adv. demo"]
    header += ["Privacy", "Ethics", "Fairness", "Mean (8)", "mi|ni acc (x100)"]
    dense = [f"{NAME} (baseline)", "dense", "70.0 (0.0)", "–", "100.0 (0.0)"] + ["–"] * 5
    dense += ["– (85.0 over 2)", "50.0"]
    gptq = [NAME, "gptq 4-bit g128", "70.0 (0.0)", "–", "50.0 (0.0)"] + ["–"] * 5 + ["– (60.0 over 2)", "–"]
    change = [NAME, "gptq 4-bit g128", "+0.0 (no sample logs)", "–", "-50.0 [-50.0, -50.0] *"]
    change += ["–"] * 7

    md = (out / "report.md").read_text()
    scores, changes = markdown_tables(md)
    assert scores == [header, dense, gptq] and changes == [header, change]
    assert f"{markdown_escape(FOLDER)}/results_" in md  # the NaN note names the folder, escaped
    assert "**-50.0** \\[-50.0, -50.0] \\*" in md

    page = Cells()
    page.feed((out / "report.html").read_text())
    html_scores, html_changes = page.tables
    assert [[text for text, _ in row] for row in html_scores] == [header, dense, gptq]
    assert [[text for text, _ in row] for row in html_changes] == [header, change]
    assert [tags for row in html_scores + html_changes for _, tags in row if tags] == [["b"]]
    assert html_changes[1][4][1] == ["b"]  # the bold change, from the cell data, not from Markdown
    html_text = (out / "report.html").read_text()
    assert "**" not in html_text and "\\*" not in html_text and "<b>x" not in html_text
    assert f"{html.escape(FOLDER)}/results_" in html_text

    with open(out / "leaderboard.csv", newline="") as f:
        board = list(csv.DictReader(f))
    assert [r["Model"] for r in board] == [NAME, f"{NAME}@gptq_4bit_128g"]
    assert [r["Model"] for r in json.loads((out / "leaderboard.json").read_text())][0] == NAME


def test_the_rendered_markdown_table_keeps_its_columns(tmp_path):
    markdown_it = pytest.importorskip("markdown_it")
    out = tmp_path / "out"
    write_report([named_runs(tmp_path / "runs")], out, bootstrap_iters=100)
    rendered = markdown_it.MarkdownIt("commonmark").enable("table").render((out / "report.md").read_text())
    page = Cells()
    page.feed(rendered)
    scores = [[text for text, _ in row] for row in page.tables[0]]
    assert scores[2][:3] == [NAME, "gptq 4-bit g128", "70.0 (0.0)"] and len(set(map(len, scores))) == 1
    assert [tags for row in page.tables[0] for _, tags in row if tags] == []
    assert "<b>x" not in rendered and "<strong>-50.0</strong>" in rendered


@pytest.mark.parametrize("name", ["m$\\bogus{$x", "m$x$_{1}", "$"])
def test_a_name_with_mathtext_dollars_is_drawn_as_text(tmp_path, name):
    """matplotlib reads `$...$` in a label as TeX math: a name holding it must not crash or turn into math.

    Labels carry the model name when the compressed model is named apart from its base (same weights).
    """
    for folder, alias, compress, weights in (
        ("dense", name, None, {"weights_sha256": "base"}),
        ("gptq", "other", {**compression("gptq", bits=4), "base_weights_sha256": "base"}, {}),
    ):
        results = {"trust_advglue": trust_results("trust_advglue", 50.0)}
        write_run(
            tmp_path / "runs" / folder,
            alias,
            compress,
            results,
            {"trust_advglue": advglue_config()},
            **weights,
        )
    out = tmp_path / "out"
    write_report([tmp_path / "runs"], out)
    assert json.loads((out / "report.json").read_text())["rows"][0]["label"] == f"{name} (dense)"
    for png in ("radar.png", "compression.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_a_run_whose_only_dimension_has_no_score_writes_every_file(tmp_path):
    write_run(
        tmp_path / "runs",
        "m",
        None,
        {"trust_advglue": trust_results("trust_advglue", None)},
        {"trust_advglue": advglue_config()},
    )
    out = tmp_path / "out"
    assert write_report([tmp_path / "runs"], out, formats=FORMATS) == out / "report.md"
    assert {p.name for p in out.iterdir()} == {
        "report.json",
        "report.md",
        "report.html",
        "leaderboard.csv",
        "leaderboard.json",
    }
    md = (out / "report.md").read_text()
    assert "No figures: no model has a trust dimension score to draw." in md and ".png" not in md
    assert ".png" not in (out / "report.html").read_text()


def test_a_figure_draws_what_is_scored_and_notes_what_is_not(tmp_path):
    """Only the baseline scored: both figures are drawn (the compressed runs have nothing to plot)."""
    for folder, compress, score in (("dense", None, 80.0), ("gptq", compression("gptq", bits=4), None)):
        write_run(
            tmp_path / "runs" / folder,
            "m",
            compress,
            {"trust_advglue": trust_results("trust_advglue", score)},
            {"trust_advglue": advglue_config()},
        )
    out = tmp_path / "out"
    md = write_report([tmp_path / "runs"], out).read_text()
    assert "![radar.png](radar.png)" in md and "![compression.png](compression.png)" in md
