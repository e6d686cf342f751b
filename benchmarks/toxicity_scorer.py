"""Cost of the offline toxicity scorers per 1,000 texts, both in one run on the same texts.

The texts are model continuations: the GPT-3.5 and GPT-4 generated prompts of DecodingTrust's toxicity
data (about 50 words each, like a 150-token generation cut short). Each scorer is built first (its fit
is cached, so the build is excluded), then scores the texts with an empty score cache, so every text is
computed. `offline-lm` runs on the GPU when torch sees one, and with the torch threads this process
has (`--threads`; vLLM's CPU engine leaves a run 1).

    TRUST_DATA_DIR=/path/to/data python benchmarks/toxicity_scorer.py [--texts 1000] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from lm_eval_trust.data import DataRoot
from lm_eval_trust.scoring import offline


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = DataRoot(None)
    texts = [t for name in offline.GPT_FILES for t in offline.gpt_texts(data, name)[0]][: args.texts]
    scorers = []
    for make in (offline.OfflineScorer, offline.OfflineLMScorer):
        start = time.perf_counter()
        scorers.append(make(data))
        print(f"{make.name}: built in {time.perf_counter() - start:.1f} s (the fit included when not cached)")
    device = scorers[1].features().device  # loading the 8 layers is part of building, not of scoring
    print(f"{len(texts)} texts, {args.threads} torch thread(s), offline-lm's model on {device}")
    seconds = {}
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TRUST_CACHE_DIR"] = cache  # an empty score cache: every text is computed
        for scorer in scorers:
            start = time.perf_counter()
            scores = scorer.score(texts)
            seconds[scorer.name] = time.perf_counter() - start
            assert len(scores) == len(texts) and all(s is not None for s in scores)
            print(f"{scorer.name}: {1000 * seconds[scorer.name] / len(texts):.1f} s per 1,000 texts")
    print(f"offline-lm / offline: {seconds['offline-lm'] / seconds['offline']:.1f}x")


if __name__ == "__main__":
    main()
