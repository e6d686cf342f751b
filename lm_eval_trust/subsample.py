"""Seeded stratified subsample: the same K documents of every scenario for every model and run.

`--metadata '{"docs_per_scenario": K, "subsample_seed": S}'` keeps K documents of each scenario run
(all of a scenario with fewer); `docs_per_scenario` may instead map scenario names or glob patterns to
K (exact name first, then the first pattern that matches; a scenario none matches runs in full), for
formulas that need more documents in some scenarios. Each scenario's draw is keyed by (S, scenario name) only, so it does
not depend on the model, the run, the order of evaluation or which other scenarios run; `rescore`
rebuilds the same documents from the same options.

The draw ranks a scenario's documents by sha256 of (S, scenario, position) and keeps the K lowest:
unlike `random.sample`, whose algorithm Python may change between versions, a digest gives the same
draw on every interpreter.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json

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


def k_for(k: int | dict, scenario: str) -> int | None:
    """Documents drawn from `scenario` under `docs_per_scenario` = k; None: all of them."""
    if not isinstance(k, dict):
        return k
    if scenario in k:
        return k[scenario]
    return next((n for pattern, n in k.items() if fnmatch.fnmatchcase(scenario, pattern)), None)


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
    docs: list[dict], scenarios: list[str], options: dict, task: str
) -> tuple[list[dict], dict | None]:
    """The documents a run scores, interleaved across `scenarios`, and its subsample settings.

    The one place a run (`TrustTask`) and `rescore` turn loaded documents into the run's documents,
    so both index the same ones by `doc_index`.
    """
    chosen = settings(options, task)
    if chosen is not None:
        docs = draw(docs, chosen[DOCS_PER_SCENARIO], chosen[SEED])
    return interleave(docs, scenarios), chosen
