"""Hand-made lm-eval results files and sample logs, in the layout lm-eval 0.4.13 writes.

Trust tasks report the headline metrics in `results`, every other number (per-scenario scores) in
`configs[task]["metadata"]["breakdown"]`, and log each document's scored item under `score` only.
"""

import json
from pathlib import Path

ADVGLUE = "lm_eval_trust.tasks.advglue.advglue"
ADVGLUE_SCENARIOS = ["advglue_dev_sst2", "advglue_dev_qqp"]
DATE = "2026-01-01T00-00-00.000000"
HEADLINE = ("score", "refusal_rate", "partial")


def compression(method: str, **arguments) -> dict | None:
    """`config.compression` as trust-hf records it (the keys the report reads)."""
    if method == "none":
        return None
    return {
        "method": method,
        "arguments": {"compress": method, **arguments},
        "sparsity": arguments.get("sparsity"),
    }


def advglue_docs(n_per_scenario: int) -> list[dict]:
    """Interleaved advglue-like docs: every label 1, sst2 and qqp alternating."""
    docs = []
    for i in range(n_per_scenario):
        for scenario in ADVGLUE_SCENARIOS:
            task = scenario.rsplit("_", 1)[-1]
            docs.append(
                {
                    "scenario": scenario,
                    "glue_task": task,
                    "messages": json.dumps([{"role": "user", "content": f"{task} item {i}"}]),
                    "label": 1,
                    "target": "positive" if task == "sst2" else "yes",
                    "doc_index": len(docs),
                }
            )
    return docs


def advglue_samples(docs: list[dict], answers: list[str]) -> list[dict]:
    """Sample-log lines for advglue docs answered with `answers` (items parsed as the task does)."""
    from lm_eval_trust.tasks.advglue import advglue

    lines = []
    for i, (doc, answer) in enumerate(zip(docs, answers, strict=True)):
        item = advglue.score_item(doc, [answer])
        lines.append(
            {
                "doc_id": i,
                "doc": doc,
                "target": doc["target"],
                "resps": [[answer]],
                "filtered_resps": [[answer]],
                "filter": "none",
                "metrics": list(HEADLINE),
                "doc_hash": f"hash{i}",
                **{name: None for name in HEADLINE},
                "score": item,
            }
        )
    return lines


def trust_results(task: str, score, partial: float = 0.0, refusal: float = 0.0) -> dict:
    """A trust task's `results` entry: the headline metrics only."""
    return {
        "name": task,
        "alias": task,
        "score,none": score,
        "score_stderr,none": "N/A",
        "refusal_rate,none": refusal,
        "partial,none": partial,
    }


def write_run(
    folder: Path,
    name: str,
    compress: dict | None,
    results: dict,
    configs: dict,
    samples: dict | None = None,
    fingerprint: str | None = None,
    date: str = DATE,
    sparsity: float = 0.0,
    n_samples: dict | None = None,
    **run_config,
) -> Path:
    """One results_<date>.json (+ samples_<task>_<date>.jsonl) in `folder`; returns the results path.

    `n_samples` is lm-eval's {task: {"original": N, "effective": n}}; `run_config` adds to `config`
    (limit, random_seed, gen_kwargs, weights_sha256, ...).
    """
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "results": results,
        "group_subtasks": {},
        "configs": configs,
        "n-samples": n_samples or {},
        "config": {
            "model": "trust-hf",
            "model_args": {"pretrained": name},
            "model_alias": name,
            "compression": compress,
            "weights_measured": {"checkpoint_format": "dense", "sparsity": sparsity},
            "model_fingerprint": fingerprint or f"{name}-{json.dumps(compress, sort_keys=True)}",
            **run_config,
        },
        "date": 0.0,
    }
    path = folder / f"results_{date}.json"
    path.write_text(json.dumps(data))
    for task, lines in (samples or {}).items():
        (folder / f"samples_{task}_{date}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def advglue_config(**metadata) -> dict:
    """`configs.trust_advglue`; pass `breakdown={name: value}` for the per-scenario numbers."""
    return {
        "task": "trust_advglue",
        "metadata": {
            "dimension": ADVGLUE,
            "scenarios_run": ADVGLUE_SCENARIOS,
            "data_source": "advglue_dev_fallback",
            "comparable_to_paper": False,
            **metadata,
        },
    }
