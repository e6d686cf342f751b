"""Seeded stratified subsample: the same K documents of every scenario for every model and run.

`--metadata '{"docs_per_scenario": K, "subsample_seed": S}'` keeps K documents of each scenario run
(all of a scenario with fewer); `docs_per_scenario` may instead map scenario names or glob patterns to
K, for formulas that need more documents in some scenarios. The most specific entry wins: the exact
name, else the matching pattern with the most literal characters (`fairness_*` before `*`); two
equally specific patterns giving one scenario different K are refused, and so is a pattern that
matches none of the scenarios its dimension runs. A scenario none matches runs in full. What each
scenario got is recorded (`applied`), and runs are compared by the documents drawn, not the
options. Each scenario's draw is keyed by (S, scenario name) only, so it does not depend on the
model, the run, the order of evaluation or which other scenarios run; `rescore`
rebuilds the same documents from the same options.

The draw ranks a scenario's documents by sha256 of (S, scenario, position) and keeps the K lowest:
unlike `random.sample`, whose algorithm Python may change between versions, a digest gives the same
draw on every interpreter.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re

from lm_eval_trust.dimension import TaskConfigError, interleave

DOCS_PER_SCENARIO = "docs_per_scenario"
SEED = "subsample_seed"


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def settings(options: dict, task: str) -> dict | None:
    """`{"docs_per_scenario": K, "subsample_seed": S}` from the task options, or None for a full run."""
    k = options.get(DOCS_PER_SCENARIO)
    if k is None:
        if options.get(SEED) is not None:
            raise TaskConfigError(
                f"{task}: --metadata {SEED} is set but {DOCS_PER_SCENARIO} is not; add "
                f'"{DOCS_PER_SCENARIO}": K to draw K documents per scenario, or drop {SEED}'
            )
        return None
    counts = k.values() if isinstance(k, dict) else [k]
    if (isinstance(k, dict) and not k) or any(not _integer(n) or n < 1 for n in counts):
        raise TaskConfigError(
            f"{task}: --metadata {DOCS_PER_SCENARIO} must be a positive integer (documents drawn per "
            f'scenario) or a non-empty {{"scenario or glob pattern": positive integer}} dict, got {k!r}; '
            "drop it to run every document"
        )
    seed = options.get(SEED, 0)
    if not _integer(seed):
        raise TaskConfigError(
            f"{task}: --metadata {SEED} must be an integer (it seeds --metadata {DOCS_PER_SCENARIO}'s "
            f"draw), got {seed!r}"
        )
    return {DOCS_PER_SCENARIO: k, SEED: seed}


def _rank(seed: int, scenario: str, position: int) -> bytes:
    return hashlib.sha256(json.dumps([seed, scenario, position]).encode()).digest()


def literal_prefix(pattern: str) -> str:
    """The characters before a pattern's first wildcard: every name it matches starts with them."""
    return re.split(r"[*?\[]", pattern, maxsplit=1)[0]


def specificity(pattern: str) -> int:
    """Literal characters of a glob pattern: `fairness_*` (9) is more specific than `*` (0)."""
    return len(re.sub(r"\[[^\]]*\]|[*?]", "", pattern))


def k_for(k: int | dict, scenario: str) -> int | None:
    """Documents drawn from `scenario` under `docs_per_scenario` = k; None: all of them.

    The exact name, else the most specific matching pattern; equally specific patterns that give
    different counts are an error naming both."""
    if not isinstance(k, dict):
        return k
    if scenario in k:
        return k[scenario]
    matching = [(specificity(p), p, n) for p, n in k.items() if fnmatch.fnmatchcase(scenario, p)]
    if not matching:
        return None
    best = max(m[0] for m in matching)
    tied = [(p, n) for s, p, n in matching if s == best]
    if len({n for _, n in tied}) > 1:
        raise TaskConfigError(
            f"--metadata {DOCS_PER_SCENARIO}: patterns {[p for p, _ in tied]} both match scenario "
            f"{scenario!r} with different counts {[n for _, n in tied]}, and neither is more specific; "
            f'name the scenario itself (e.g. "{scenario}": K) or drop one pattern'
        )
    return tied[0][1]


def aimed_at(pattern: str, prefix: str) -> bool:
    """Whether a pattern may match names starting with `prefix`: its literal start and the prefix
    agree as far as both go (`fair*` and `fairness_x*` fit `fairness_`; `*...` fits every prefix)."""
    start = literal_prefix(pattern)
    return start.startswith(prefix) or prefix.startswith(start)


def unmatched(k: dict, scenarios: list[str], prefix: str) -> list[str]:
    """Entries of `k` aimed at this dimension (a literal start that fits `prefix`) that match none of
    `scenarios`: a typo or a scenario not run, which would leave the run in full unannounced."""
    return [
        p
        for p in k
        if literal_prefix(p) and aimed_at(p, prefix) and not any(fnmatch.fnmatchcase(s, p) for s in scenarios)
    ]


def aimed_at_nothing(k, prefixes: list[str]) -> list[str]:
    """Entries of a `docs_per_scenario` dict that no scenario of the given dimensions can match:
    every scenario name starts with its dimension's prefix."""
    if not isinstance(k, dict):
        return []
    return [p for p in k if not any(aimed_at(p, x) for x in prefixes)]


def draw(docs: list[dict], k: int | dict, seed: int) -> list[dict]:
    """K documents of every scenario in `docs` (all of one with fewer), in their original order."""
    positions: dict[str, list[int]] = {}
    for i, doc in enumerate(docs):
        positions.setdefault(doc["scenario"], []).append(i)
    kept: set[int] = set()
    for scenario, indices in positions.items():
        ranked = sorted(range(len(indices)), key=lambda p: _rank(seed, scenario, p))
        kept.update(indices[p] for p in ranked[: k_for(k, scenario)])
    return [doc for i, doc in enumerate(docs) if i in kept]


def run_documents(
    docs: list[dict], scenarios: list[str], options: dict, task: str, prefix: str
) -> tuple[list[dict], dict | None]:
    """The documents a run scores, interleaved across `scenarios`, and its subsample settings with,
    for a dict, what each scenario got (`applied`: K, or None for all of them).

    The one place a run (`TrustTask`) and `rescore` turn loaded documents into the run's documents,
    so both index the same ones by `doc_index`. `prefix` is the dimension's scenario prefix.
    """
    chosen = settings(options, task)
    if chosen is not None:
        k = chosen[DOCS_PER_SCENARIO]
        if isinstance(k, dict):
            missing = unmatched(k, scenarios, prefix)
            if missing:
                raise TaskConfigError(
                    f"{task}: --metadata {DOCS_PER_SCENARIO} entries {missing} match none of the "
                    f"scenarios run ({', '.join(scenarios)}); correct the name or pattern, or drop it"
                )
            try:
                chosen["applied"] = {s: k_for(k, s) for s in scenarios}
            except TaskConfigError as err:
                raise TaskConfigError(f"{task}: {err}") from None
            if all(n is None for n in chosen["applied"].values()):  # entries for other dimensions only
                return interleave(docs, scenarios), None
        docs = draw([d for d in docs if d["scenario"] in scenarios], k, chosen[SEED])
    return interleave(docs, scenarios), chosen
