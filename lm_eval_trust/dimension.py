"""A trust dimension: its module's pure functions, and the one way they turn responses into scores.

A dimension module (named by its YAML's `metadata.dimension` and its `REGISTRY` entry) provides:

- `SCENARIO_PREFIX`: every scenario name of the dimension starts with it;
- `load(data, options) -> Loaded`: data files -> docs (`scenario`, `messages`, fields to score);
- `score_item(doc, generations) -> dict`: one doc's generations -> its one scored item;
- `aggregate(items, scenarios) -> dict`: all items -> every number of the dimension (`score`,
  `refusal_rate`, `partial`, per-scenario and component figures, optionally `details`: a JSON-able
  payload such as matrices for heat maps, and `insufficient`: {metric: why it is None} for a
  formula that has too little data, which gives None, never a number);
- optionally `score_responses(resps, docs, options) -> resps`: runs once over all responses of the
  task, for scorers that work in batches (toxicity classifiers);
- optionally `scoring_info(options) -> dict`: results metadata on what scored the answers (the
  toxicity scorer's version), which `rescore` records anew;
- optionally `SCORING_OPTIONS`: the results metadata keys that change how answers are scored (a
  parser, formula, classifier or scorer); runs that differ in one are not compared (`scoring`);
- `LABEL` and `LEADERBOARD_COLUMN` (the report's names), `DATA_FOLDERS` and optionally
  `DATA_ALIASES` (its files, for `data fetch --only`), and `worst_case(design) -> bounds.Bound` (the
  plan's bound on the score's spread).

The YAML's `metric_list` names the headline metrics (lm-eval's results); every other number that
`aggregate` returns is the breakdown, recorded beside them in the task's results metadata. `TrustTask`
(a run) and `rescore` (sample logs) both score through `Dimension`, so they cannot disagree.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import zip_longest
from types import ModuleType

import jinja2

from lm_eval_trust.data import MANIFEST_PATH

# The trust dimensions, in DecodingTrust's order (the paper's sections and its leaderboard): each
# one's task is `trust_<key>` and its folder holds its YAML and its module, which declares the facts
# the rest of the package reads here (`LABEL`, `LEADERBOARD_COLUMN`, `DATA_FOLDERS`, `worst_case`).
# A new dimension is a folder and one entry.
REGISTRY = {
    "toxicity": "lm_eval_trust.tasks.toxicity.toxicity",
    "stereotype": "lm_eval_trust.tasks.stereotype.stereotype",
    "advglue": "lm_eval_trust.tasks.advglue.advglue",
    "ood": "lm_eval_trust.tasks.ood.ood",
    "adv_demo": "lm_eval_trust.tasks.adv_demo.adv_demo",
    "privacy": "lm_eval_trust.tasks.privacy.privacy",
    "ethics": "lm_eval_trust.tasks.ethics.ethics",
    "fairness": "lm_eval_trust.tasks.fairness.fairness",
}


def registered() -> dict[str, ModuleType]:
    """Every registered dimension's module, in the registry's order."""
    return {key: importlib.import_module(name) for key, name in REGISTRY.items()}


class TaskConfigError(ValueError):
    """A task option (YAML or `--metadata`) is invalid; the message names it and the fix."""


@dataclass
class Loaded:
    """What a dimension module's `load` returns; `redact` masks its personal data in logged text."""

    docs: list[dict]
    scenarios: list[str]
    default_scenarios: list[str]
    info: dict = field(default_factory=dict)
    redact: Callable[[str], str] | None = None


@dataclass(frozen=True)
class Scores:
    """A dimension's numbers over one set of items: lm-eval's metrics and everything else."""

    headline: dict
    breakdown: dict
    details: dict | None = None
    insufficient: dict = field(default_factory=dict)


DIGEST = "messages_sha256"


def document_row(doc: dict, index: int) -> tuple[dict, str]:
    """A doc as lm-eval holds and logs it (its fields and index, its messages only as a sha256),
    and its messages as JSON.

    The rendered prompt is logged with the request; keeping the messages out of the row halves
    what each document costs in memory and in the sample log.
    """
    messages = json.dumps(doc["messages"])
    row = {k: v for k, v in doc.items() if k != "messages"}
    return {**row, DIGEST: hashlib.sha256(messages.encode()).hexdigest(), "doc_index": index}, messages


def redacted_row(row: dict, redact: Callable[[str], str]) -> dict:
    """`row` with personal data masked in every text field (the messages' digest is no text)."""
    return {k: redact(v) if isinstance(v, str) and k != DIGEST else v for k, v in row.items()}


# The prompt templates of every dimension (YAML strings): a missing variable is an error, and a
# template's final newline is kept, as DecodingTrust's f-strings keep it.
TEMPLATE_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def percent(value: float | None) -> float | None:
    """A proportion on DecodingTrust's 0-100 scale; None stays None (no data)."""
    return None if value is None else 100 * value


def interleave(docs: list[dict], scenarios: list[str]) -> list[dict]:
    """Round-robin over scenarios, so `--limit N` samples every scenario instead of the first."""
    by_scenario: dict[str, list[dict]] = {s: [] for s in scenarios}
    for doc in docs:
        if doc["scenario"] in by_scenario:
            by_scenario[doc["scenario"]].append(doc)
    rows = zip_longest(*by_scenario.values())
    return [doc for row in rows for doc in row if doc is not None]


def select_scenarios(requested, loaded: Loaded, prefix: str, task: str) -> list[str]:
    """The scenarios to run: `--metadata scenarios` restricted to this dimension, else its defaults."""
    if requested is None:
        return list(loaded.default_scenarios)
    if isinstance(requested, str):
        requested = [requested]
    if not isinstance(requested, list) or not all(isinstance(s, str) for s in requested):
        raise TaskConfigError(
            f"{task}: --metadata scenarios must be a list of scenario names, got {requested!r}"
        )
    mine = [s for s in requested if s.startswith(prefix)]
    if not mine:
        return list(loaded.default_scenarios)
    unknown = [s for s in mine if s not in loaded.scenarios]
    if unknown:
        raise TaskConfigError(
            f"{task}: unknown scenario(s) {unknown} in --metadata scenarios; this data has: "
            f"{', '.join(loaded.scenarios)}"
        )
    return [s for s in loaded.scenarios if s in mine]


def documents_identity(docs: list[dict]) -> dict:
    """The count and a sha256 over the sorted (scenario, messages digest) pairs of `docs`: equal for
    two runs exactly when they answered the same prompts."""
    pairs = sorted((d["scenario"], d[DIGEST]) for d in docs)
    return {
        "documents": len(pairs),
        "documents_sha256": hashlib.sha256(json.dumps(pairs).encode()).hexdigest(),
    }


def comparability(
    scenarios: list[str], docs: list[dict], sampled: dict, generation_kwargs: dict, meta: dict
) -> dict:
    """What must be equal for two runs of a task to be compared (flat keys, JSON values).

    `data` is the sha256 of the shipped manifest every data file is checked against, so it names
    the data's content, not where it lies. The documents are compared by what was drawn
    (`documents_sha256`), not by the options that drew them: `docs_per_scenario` larger than every
    scenario draws the full set.
    """
    return {
        "scenarios_run": list(scenarios),
        **documents_identity(docs),
        "samples_per_prompt": dict(sampled),
        "generation_kwargs": json.loads(json.dumps(generation_kwargs, default=str)),
        "data": hashlib.sha256(MANIFEST_PATH.read_bytes()).hexdigest(),
        "data_source": meta.get("data_source"),
    }


def coverage(items: list[dict], scenarios: list[str], documents_total: int | None, scores: Scores) -> dict:
    """What the numbers rest on: documents and scenarios scored (so `--limit` shows), and why each
    None metric is None.

    `documents_total` counts the documents of `scenarios` in the full data (None when unknown).
    """
    counts = {s: 0 for s in scenarios}
    for item in items:
        counts[item["scenario"]] = counts.get(item["scenario"], 0) + 1
    empty = [s for s in scenarios if not counts[s]]
    insufficient = {}
    for name, value in {**scores.headline, **scores.breakdown}.items():
        if value is not None or name in scores.insufficient:
            continue
        scenario = next((s for s in empty if name.endswith(f"_{s}")), None)
        insufficient[name] = (
            f"no scored document in scenario {scenario}"
            if scenario
            else "undefined: the scenarios it averages have no scored document, or too few"
        )
    return {
        "documents": len(items),
        "documents_total": documents_total,
        "scenarios": sum(1 for s in scenarios if counts[s]),
        "scenarios_total": len(scenarios),
        "scenarios_without_documents": empty,
        "insufficient": {**insufficient, **scores.insufficient},
    }


def scoring(metadata: dict) -> dict:
    """A task's scoring options, from its results metadata, by its dimension's `SCORING_OPTIONS`
    (empty for a task that is not a trust task)."""
    module = metadata.get("dimension")
    if not module:
        return {}
    return {key: metadata.get(key) for key in getattr(importlib.import_module(module), "SCORING_OPTIONS", ())}


class Dimension:
    """A dimension module with the headline metrics its task's YAML declares."""

    def __init__(self, module: str | ModuleType, headline: list[str], task: str):
        self.module = importlib.import_module(module) if isinstance(module, str) else module
        self.headline = list(headline)
        self.task = task
        if self.headline[:1] != ["score"]:
            raise TaskConfigError(
                f"{task}: its YAML's metric_list must start with `score` (the metric that carries each "
                f"document's scored item), got {self.headline}"
            )

    def score_responses(self, resps: list[list], docs: list[dict], options: dict) -> list[list]:
        scorer = getattr(self.module, "score_responses", None)
        return scorer(resps, docs, options) if scorer else resps

    def score_item(self, doc: dict, generations: list) -> dict:
        return self.module.score_item(doc, generations)

    def aggregate(self, items: list[dict], scenarios: list[str]) -> Scores:
        result = dict(self.module.aggregate(items, scenarios))
        details = result.pop("details", None)
        insufficient = result.pop("insufficient", None) or {}
        missing = [name for name in self.headline if name not in result]
        if missing:
            raise TaskConfigError(
                f"{self.task}: metric_list declares {missing}, which {self.module.__name__}.aggregate "
                f"does not compute; it computes {sorted(result)}"
            )
        headline = {name: result.pop(name) for name in self.headline}
        return Scores(headline, result, details, insufficient)

    def score(
        self, docs: list[dict], resps: list[list], scenarios: list[str], options: dict
    ) -> tuple[list[list], list[dict], Scores]:
        """Responses to scores in the task's three steps: batch scoring, items, aggregate."""
        filtered = self.score_responses(resps, docs, options)
        items = [self.score_item(doc, gens) for doc, gens in zip(docs, filtered, strict=True)]
        return filtered, items, self.aggregate(items, scenarios)
