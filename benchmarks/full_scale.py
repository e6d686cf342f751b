"""Every document of the data mirror through the instant `trust-scripted` model: the harness's own cost.

A full DecodingTrust run writes one sample-log line per document; this measures what the task code
costs around the model at that scale: time per stage, peak memory and bytes written, with the model
itself free. Run:

    TRUST_DATA_DIR=/path/to/data python benchmarks/full_scale.py --n_samples 2 --output_path /tmp/full_scale

It prints one table row per stage and a JSON summary (also written to `<output_path>/summary.json`).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from pathlib import Path

TASKS = "trust"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _bytes_under(path: Path) -> dict[str, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return {
        "samples": sum(p.stat().st_size for p in files if p.name.startswith("samples_")),
        "results": sum(p.stat().st_size for p in files if p.name.startswith("results_")),
    }


def run(n_samples: int, output_path: Path, limit: float | None) -> dict:
    from lm_eval import evaluator
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    from lm_eval_trust import TASKS_DIR
    from lm_eval_trust.model_adapters.scripted import ScriptedLM

    times: dict[str, float] = {}
    peaks: dict[str, int] = {}
    start = time.perf_counter()
    manager = TaskManager(include_path=str(TASKS_DIR), metadata={"n_samples": n_samples})
    task_dict = manager.load([TASKS])
    times["load tasks (data, documents, prompts)"] = time.perf_counter() - start
    peaks["load tasks (data, documents, prompts)"] = round(_peak_rss_mb())

    model = ScriptedLM()
    generate = model.generate_until
    generation = {"seconds": 0.0, "requests": 0}

    def timed_generate(requests, disable_tqdm: bool = False):
        t = time.perf_counter()
        out = generate(requests, disable_tqdm)
        generation["seconds"] += time.perf_counter() - t
        generation["requests"] += len(requests)
        return out

    model.generate_until = timed_generate
    start = time.perf_counter()
    results = evaluator.evaluate(model, task_dict, limit=limit, log_samples=True, bootstrap_iters=0)
    evaluate_seconds = time.perf_counter() - start
    times["generate (scripted, instant)"] = generation["seconds"]
    times["requests, filters, scoring, aggregation"] = evaluate_seconds - generation["seconds"]
    peaks["generate (scripted, instant)"] = peaks["requests, filters, scoring, aggregation"] = round(
        _peak_rss_mb()
    )

    start = time.perf_counter()
    shutil.rmtree(output_path, ignore_errors=True)
    tracker = EvaluationTracker(output_path=str(output_path))
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    for task_name in results["configs"]:
        tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
    times["write results and sample logs"] = time.perf_counter() - start
    peaks["write results and sample logs"] = round(_peak_rss_mb())

    documents = {t: len(s) for t, s in samples.items()}
    return {
        "n_samples": n_samples,
        "limit": limit,
        "documents": documents,
        "generations": generation["requests"],
        "seconds": {k: round(v, 1) for k, v in times.items()},
        "total_seconds": round(sum(times.values()), 1),
        "peak_rss_mb": round(_peak_rss_mb()),
        "peak_rss_mb_after_stage": peaks,
        "bytes_written": _bytes_under(output_path),
        "scores": {t: r.get("score,none") for t, r in results["results"].items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n_samples", type=int, default=2, help="samples per prompt of sampled scenarios")
    parser.add_argument("--output_path", type=Path, default=Path("out/full_scale"))
    parser.add_argument("--limit", type=float, default=None, help="documents per task (default: all)")
    args = parser.parse_args(argv)
    summary = run(args.n_samples, args.output_path, args.limit)
    for stage, seconds in summary["seconds"].items():
        print(f"{stage:45s} {seconds:9.1f} s   peak so far {summary['peak_rss_mb_after_stage'][stage]} MB")
    print(f"{'total':45s} {summary['total_seconds']:9.1f} s")
    print(f"documents {sum(summary['documents'].values())}, generations {summary['generations']}")
    written = summary["bytes_written"]
    print(f"peak memory {summary['peak_rss_mb']} MB; sample logs {written['samples'] / 1e6:.1f} MB")
    (args.output_path / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
