"""A dimension is a folder: a toy ninth dimension, written in a temporary folder, runs through `run`,
`rescore`, `plan` and `report` with nothing of the package changed but its one `REGISTRY` entry.

The entry is made by the process that runs the CLI (a user's would be one line in
`lm_eval_trust/dimension.py`); everything else the rest of the package needs (label, leaderboard
column, data folders, worst-case bound) the folder's module declares.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
from conftest import cli_env

from lm_eval_trust import TASKS_DIR

MODULE = '''
"""A toy dimension: the share of answers starting with "yes", per scenario."""
from lm_eval_trust import bounds
from lm_eval_trust.dimension import Loaded

SCENARIO_PREFIX = "toy_"
LABEL = "Toy"
LEADERBOARD_COLUMN = "Toy Answers"
DATA_FOLDERS = ()
SCENARIOS = ["toy_short", "toy_long"]
worst_case = bounds.scenario_mean


def load(data, options):
    docs = [
        {"scenario": s, "messages": [{"role": "user", "content": f"Answer yes or no ({s} {i})."}]}
        for s in SCENARIOS
        for i in range(6)
    ]
    return Loaded(docs, list(SCENARIOS), list(SCENARIOS))


def score_item(doc, generations):
    return {"scenario": doc["scenario"], "yes": generations[0].strip().lower().startswith("yes")}


def aggregate(items, scenarios):
    rates = {}
    for s in scenarios:
        group = [i["yes"] for i in items if i["scenario"] == s]
        rates[s] = 100 * sum(group) / len(group) if group else None
    present = [r for r in rates.values() if r is not None]
    return {
        **{f"score_{s}": r for s, r in rates.items()},
        "score": sum(present) / len(present) if present else None,
        "refusal_rate": 0.0,
        "partial": float(len(present) < len(scenarios)),
    }
'''

YAML = """task: trust_toy
include: {template}
generation_kwargs:
  until: ["\\n"]
  do_sample: false
  max_gen_toks: 8
metadata:
  version: 1.0
  dimension: toy_trust
"""

# The CLI with the toy dimension registered: the one entry outside its folder.
REGISTERED_CLI = """
import sys
from lm_eval_trust import dimension
dimension.REGISTRY["toy"] = "toy_trust"
sys.argv[0] = "lm-eval-trust"
from lm_eval_trust.cli import main
main()
"""


@pytest.fixture(scope="module")
def toy(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy")
    (folder / "toy_trust.py").write_text(MODULE)
    (folder / "trust_toy.yaml").write_text(YAML.format(template=TASKS_DIR / "_trust_template_yaml"))
    env = cli_env(shared_data, tmp_path_factory.mktemp("toy_cache"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), env.get("PYTHONPATH")]))

    def cli(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-c", REGISTERED_CLI, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    return folder, cli


def test_a_toy_dimension_runs_rescores_plans_and_reports(toy, tmp_path):
    folder, cli = toy
    run = tmp_path / "run"
    cli(
        *("--model", "trust-scripted", "--tasks", "trust_toy", "--include_path", str(folder)),
        *("--log_samples", "--output_path", str(run)),
    )
    (results_file,) = run.rglob("results_*.json")
    results = json.loads(results_file.read_text())
    score = results["results"]["trust_toy"]["score,none"]
    assert 0 <= score <= 100
    assert set(results["configs"]["trust_toy"]["metadata"]["breakdown"]) >= {
        "score_toy_short",
        "score_toy_long",
    }

    rescored = tmp_path / "rescored"
    cli("rescore", str(run), "-o", str(rescored))
    (again,) = rescored.rglob("results_*.json")
    assert json.loads(again.read_text())["results"]["trust_toy"]["score,none"] == score

    plan = tmp_path / "plan.json"
    cli("plan", "--tasks", "trust_toy", "--include_path", str(folder), "--json", str(plan))
    figures = json.loads(plan.read_text())["dimensions"]["trust_toy"]
    assert figures["documents"] == 12
    # The toy's own bound: a mean over 2 scenarios of 6 documents each.
    assert figures["sd"]["worst"] == pytest.approx(100 * (2 * 0.25 / 6) ** 0.5 / 2)

    report = tmp_path / "report"
    cli("report", str(run), "-o", str(report), "--format", "markdown", "leaderboard")
    header = next(
        line for line in (report / "report.md").read_text().splitlines() if line.startswith("| Model")
    )
    assert "| Toy |" in header and "| Mean (9) |" in header
    rows = list(csv.reader((report / "leaderboard.csv").open()))
    column = rows[0].index("Toy Answers")
    assert float(rows[1][column]) == pytest.approx(score, abs=0.01)
