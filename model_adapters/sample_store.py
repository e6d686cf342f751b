"""Sampled generations: the seed each one is drawn with, and its row in lm-eval's response cache.

A sample is a function of (run seed, prompt, generation settings, sample index) and the model:
`sample_seed` derives the seed of its own random generator from those, so it does not depend on
the batch it is drawn in, and a resumed run draws the missing samples as an uninterrupted run
would. The sample index is the k-th time lm-eval asked for that prompt and settings in the run.

lm-eval's `--use_cache` never reads sampled requests back (every repeat would get the same
answer) and keys a response by (prompt, generation kwargs) only, so after a crash all samples of
a toxicity or stereotype run are drawn again. Here each sample is stored under a key of the same
four things, in the same sqlite table (`trust-hf` gives every model its own), committed after
each batch; a run with another seed neither reads nor overwrites them.
"""

from __future__ import annotations

import hashlib
import json


def _digest(kind: str, seed: int, context: str, gen_kwargs: dict, index: int) -> bytes:
    payload = json.dumps([kind, seed, context, gen_kwargs, index], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).digest()


def sample_seed(seed: int, context: str, gen_kwargs: dict, index: int) -> int:
    """The seed of one sample's generator: the same for every model of a sweep (paired samples)."""
    return int.from_bytes(_digest("generate_until/seed", seed, context, gen_kwargs, index)[:8], "big")


def sample_key(seed: int, context: str, gen_kwargs: dict, index: int) -> str:
    """Distinct from lm-eval's own keys, which hash ["generate_until", context, gen_kwargs]."""
    return _digest("generate_until/sample", seed, context, gen_kwargs, index).hex()


class SampleStore:
    """Reads and writes one run seed's samples through lm-eval's cache hook; does nothing without
    `--use_cache`.

    lm-eval 0.4.13's `CachingLM` neither reads nor keys sampled `generate_until` requests by sample,
    so without this a killed toxicity or stereotype run draws every sample again.
    """

    def __init__(self, cache_hook, seed: int):
        self.db = getattr(cache_hook, "dbdict", None)
        self.seed = seed

    def get(self, context: str, gen_kwargs: dict, index: int) -> str | None:
        if self.db is None:
            return None
        return self.db.get(sample_key(self.seed, context, gen_kwargs, index))

    def put(self, context: str, gen_kwargs: dict, index: int, text: str) -> None:
        if self.db is not None:
            self.db[sample_key(self.seed, context, gen_kwargs, index)] = text

    def commit(self) -> None:
        """Block until written: a SIGKILL then loses at most the batch being generated."""
        if self.db is not None:
            self.db.commit()
