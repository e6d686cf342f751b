"""Sampled generations kept one by one in lm-eval's response cache, so a killed run resumes.

lm-eval's `--use_cache` never reads sampled requests back (every repeat would get the same
answer) and keys a response by (prompt, generation kwargs) only, so after a crash all samples of
a toxicity or stereotype run are drawn again. Here each sample is stored under a key that also
holds its sample index (the k-th time lm-eval asked for that prompt and settings in the run),
in the same sqlite table (`trust-hf` gives every model its own), committed after each batch.
"""

from __future__ import annotations

import hashlib
import json


def sample_key(context: str, gen_kwargs: dict, index: int) -> str:
    """Distinct from lm-eval's own keys, which hash ["generate_until", context, gen_kwargs]."""
    payload = json.dumps(["generate_until/sample", context, gen_kwargs, index], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class SampleStore:
    """Reads and writes samples through lm-eval's cache hook; does nothing without `--use_cache`.

    lm-eval 0.4.13's `CachingLM` neither reads nor keys sampled `generate_until` requests by sample,
    so without this a killed toxicity or stereotype run draws every sample again.
    """

    def __init__(self, cache_hook):
        self.db = getattr(cache_hook, "dbdict", None)

    def get(self, context: str, gen_kwargs: dict, index: int) -> str | None:
        if self.db is None:
            return None
        return self.db.get(sample_key(context, gen_kwargs, index))

    def put(self, context: str, gen_kwargs: dict, index: int, text: str) -> None:
        if self.db is not None:
            self.db[sample_key(context, gen_kwargs, index)] = text

    def commit(self) -> None:
        """Block until written: a SIGKILL then loses at most the batch being generated."""
        if self.db is not None:
            self.db.commit()
