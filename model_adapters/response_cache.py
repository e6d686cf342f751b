"""A model's rows in lm-eval's response cache (`--use_cache`): its own table, and its samples.

lm-eval 0.4.13's `CachingLM` keys a response by (request type, prompt, generation kwargs) only,
nothing of the model, so two models sharing a cache file would read each other's answers: the
model types here move their rows into a table named by the model's identity (`fingerprint`), in
the same sqlite file, which works with both `lm_eval` and `lm-eval-trust`.

It also never reads sampled requests back (every repeat would get the same answer), so after a
crash all samples of a toxicity or stereotype run would be drawn again. A sample is a function of
(run seed, prompt, generation settings, sample index) and the model: `sample_seed` derives the
seed of its own generator from those, so it depends neither on its batch nor on an interruption,
and `SampleStore` keeps it under a key of the same four things in the model's table, committed
after each engine call; a run with another seed neither reads nor overwrites them. The sample
index is the k-th time lm-eval asked for that prompt and settings in the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3

log = logging.getLogger(__name__)


class ModelTable:
    """Mixin for an lm-eval model with `fingerprint`; `table_prefix` names the model type."""

    table_prefix: str

    def set_cache_hook(self, cache_hook) -> None:
        """Point lm-eval's response cache at this model's own table, through lm-eval's `SqliteDict`
        internals (`tablename`, `conn`). Rows a killed run left unreadable are dropped (computed
        again): `CachingLM` would fail on the first one it reads."""
        db = getattr(cache_hook, "dbdict", None)
        if db is not None:
            db.tablename = f"{self.table_prefix}_{self.fingerprint}"
            try:
                db.conn.execute(
                    f'CREATE TABLE IF NOT EXISTS "{db.tablename}" (key TEXT PRIMARY KEY, value BLOB)'
                )
                dropped = [
                    key
                    for key, value in db.conn.select(f'SELECT key, value FROM "{db.tablename}"')
                    if not decodes(db, value)
                ]
                for key in dropped:
                    db.conn.execute(f'DELETE FROM "{db.tablename}" WHERE key = ?', (key,))
                db.commit()
            except sqlite3.DatabaseError as err:
                raise sqlite3.DatabaseError(
                    f"--use_cache file {db.filename} is damaged ({err}); move it aside or delete it and "
                    "run again: it only holds cached answers, which are then computed again"
                ) from err
            if dropped:
                log.warning(
                    "Response cache %s: dropped %d unreadable rows of table %s; they are computed again",
                    db.filename,
                    len(dropped),
                    db.tablename,
                )
            log.info("Response cache %s: table %s for this model", db.filename, db.tablename)
        super().set_cache_hook(cache_hook)


def decodes(db, value) -> bool:
    """Whether `db`'s `decode` reads a stored row (a killed run may have left it cut)."""
    try:
        db.decode(value)
    except Exception:  # any failure to unpickle makes the row unusable
        return False
    return True


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
    `--use_cache`."""

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
