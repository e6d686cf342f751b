"""How much narrower paired intervals get when the dense and compressed runs share sampling seeds.

`trust-hf` seeds every sampled generation from (run seed, prompt, settings, sample index), so two
models run with the same `--seed` draw their samples from the same random numbers. This runs the
sampled dimensions three times on the same seeded subsample: the dense model (seed A), the
compressed model with seed A (shared seeds) and with seed B (independent seeds), and prints the
95% paired bootstrap interval of each change both ways, and the ratio of the widths. Run:

    TRUST_DATA_DIR=/path/to/data python benchmarks/paired_seeds.py --output_path /tmp/paired_seeds

Only the seed differs between the two compressed runs, so a narrower shared-seed interval is the
noise that shared random numbers cancel. A run whose folder already holds results is kept, so a
second call only recomputes the intervals.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from lm_eval_trust import stats
from lm_eval_trust.report.comparison import bootstrap_change, trust_columns
from lm_eval_trust.report.runs import load_runs

TASKS = ("trust_toxicity", "trust_stereotype")


def evaluate(out: Path, model_args: str, seed: int, args) -> float:
    """One lm-eval-trust run; its wall time in seconds."""
    metadata = {"docs_per_scenario": args.docs_per_scenario, "n_samples": args.n_samples}
    command = [
        *(sys.executable, "-m", "lm_eval_trust.cli", "run", "--model", "trust-hf"),
        *("--model_args", model_args, "--tasks", ",".join(TASKS), "--metadata", json.dumps(metadata)),
        *("--gen_kwargs", f"max_gen_toks={args.max_gen_toks}", "--seed", str(seed)),
        *("--apply_chat_template", "--batch_size", "auto", "--device", "cpu"),
        *("--log_samples", "--output_path", str(out)),
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output_path", type=Path, required=True)
    parser.add_argument("--pretrained", default="smollm2-135m-instruct")
    parser.add_argument(
        "--compress_args", default="compress=gptq,bits=4,group_size=64,calib_dataset=self,calib_samples=16"
    )
    parser.add_argument("--docs_per_scenario", type=int, default=8)
    parser.add_argument("--n_samples", type=int, default=5)
    parser.add_argument("--max_gen_toks", type=int, default=32)
    parser.add_argument("--seeds", type=int, nargs=2, default=(1234, 4321), metavar=("A", "B"))
    parser.add_argument("--bootstrap_iters", type=int, default=2000)
    args = parser.parse_args()
    seed_a, seed_b = args.seeds
    compressed = f"pretrained={args.pretrained},{args.compress_args}"
    folders = {
        "dense, seed A": (f"pretrained={args.pretrained}", seed_a),
        "compressed, seed A": (compressed, seed_a),
        "compressed, seed B": (compressed, seed_b),
    }
    seconds = {}
    for i, (name, (model_args, seed)) in enumerate(folders.items()):
        out = args.output_path / f"run{i}"
        if not any(out.rglob("results_*.json")):
            seconds[name] = evaluate(out, model_args, seed, args)
    (dense,), (shared,), (independent,) = (load_runs([args.output_path / f"run{i}"]) for i in range(3))
    columns = [c for c in trust_columns() if c.tasks[0] in TASKS]
    print(f"\n{'dimension':<18}{'change':>9}{'shared seeds CI':>22}{'independent CI':>22}{'width ratio':>13}")
    summary = {
        "settings": vars(args) | {"output_path": str(args.output_path)},
        "seconds": seconds,
        "rows": [],
    }
    for column in columns:
        both = [
            bootstrap_change(dense, other, column, args.bootstrap_iters, stats.DEFAULT_SEED)
            for other in (shared, independent)
        ]
        if any(isinstance(r, str) for r in both):
            print(f"{column.key:<18} no interval: {[r for r in both if isinstance(r, str)]}")
            continue
        widths = [r.high - r.low for r in both]
        print(
            f"{column.key:<18}{both[0].change:>9.2f}{f'[{both[0].low:.2f}, {both[0].high:.2f}]':>22}"
            f"{f'[{both[1].low:.2f}, {both[1].high:.2f}]':>22}{widths[0] / widths[1]:>13.2f}"
        )
        summary["rows"].append(
            {
                "dimension": column.key,
                "paired_documents": both[0].n_pairs,
                "shared": {"change": both[0].change, "ci": [both[0].low, both[0].high]},
                "independent": {"change": both[1].change, "ci": [both[1].low, both[1].high]},
                "width_ratio": widths[0] / widths[1],
            }
        )
    (args.output_path / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
