"""Compression time through `lm-eval-trust compress` against llm-compressor called directly.

For each method, in one run on the same machine and calibration text:
  ours:   `lm-eval-trust compress --model_args pretrained=...,compress=...` in a fresh cache
          (load, calibration, compression, save, reload to measure);
  direct: load the model, llm-compressor's `oneshot` with the same recipe and tokens, save.
Prints both wall times and ours/direct. Ours also pays for a fresh process (imports), hashing the
base weights and reloading the result to measure it. Magnitude pruning has no llm-compressor
equivalent (its modifier prunes nothing in oneshot), so its direct column is our own mask function.

    python benchmarks/compression_overhead.py --calib_file calib.txt [--methods wanda gptq ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from lm_eval_trust.compression import CompressionSpec, format_model_args, model_args, parse_setting
from lm_eval_trust.model_adapters import embedded
from lm_eval_trust.model_adapters.calibration import calibration_dataset
from lm_eval_trust.model_adapters.recipes import compress_model

SETTINGS = {
    "magnitude": "magnitude:2:4",
    "wanda": "wanda:2:4",
    "sparsegpt": "sparsegpt:2:4",
    "gptq": "gptq:4:g64",
    "awq": "awq:4:g64",
}


def spec_for(method: str, calib_file: str, samples: int, seqlen: int) -> CompressionSpec:
    return replace(
        parse_setting(SETTINGS[method]),
        calib_dataset=calib_file,
        calib_samples=samples,
        calib_seqlen=seqlen,
        calib_template="raw",
    )


def run_ours(model: str, spec: CompressionSpec) -> float:
    args = format_model_args({"pretrained": model, **model_args(spec)})
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TRUST_CACHE_DIR": cache}
        start = time.perf_counter()
        subprocess.run(
            [str(Path(sys.executable).parent / "lm-eval-trust"), "compress", "--model_args", args],
            env=env,
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - start


def run_direct(base: str, spec: CompressionSpec) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    with tempfile.TemporaryDirectory() as out:
        if spec.compress == "magnitude":
            compress_model(spec, model, tokenizer, None)
            model.save_pretrained(out)
        else:
            compress_model(spec, model, tokenizer, calibration_dataset(spec, model, tokenizer)[0])
            model.save_pretrained(out, save_compressed=True)
        tokenizer.save_pretrained(out)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--calib_file", required=True, help="a local .txt/.jsonl/.json calibration file")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seqlen", type=int, default=256)
    parser.add_argument("--methods", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    base = embedded.resolve(args.model)
    rows = []
    for method in args.methods:
        spec = spec_for(method, args.calib_file, args.samples, args.seqlen)
        ours = run_ours(args.model, spec)
        with contextlib.redirect_stdout(sys.stderr):  # llm-compressor logs to stdout
            direct = run_direct(base, spec)
        rows.append(
            {
                "method": method,
                "ours_s": round(ours, 1),
                "direct_s": round(direct, 1),
                "ratio": round(ours / direct, 2),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    print(f"{'method':10s} {'ours (s)':>9s} {'direct (s)':>10s} {'ours/direct':>11s}")
    for row in rows:
        print(f"{row['method']:10s} {row['ours_s']:9.1f} {row['direct_s']:10.1f} {row['ratio']:11.2f}")


if __name__ == "__main__":
    main()
