"""Each model's own table in lm-eval's response cache (`--use_cache`).

lm-eval 0.4.13's `CachingLM` keys a response by (request type, prompt, generation kwargs) only,
nothing of the model, so two models sharing a cache file would read each other's answers. The
model types here move their rows into a table named by the model's identity (`fingerprint`), in
the same sqlite file, which works with both `lm_eval` and `lm-eval-trust`.
"""

from __future__ import annotations

import logging
import sqlite3

log = logging.getLogger(__name__)


class ModelTable:
    """Mixin for an lm-eval model with `fingerprint`; `table_prefix` names the model type."""

    table_prefix: str

    def set_cache_hook(self, cache_hook) -> None:
        """Point lm-eval's response cache at this model's own table in the same sqlite file.

        lm-eval 0.4.13's `CachingLM` keys a response by `hash_args(request type, args)`, nothing of
        the model, so without this two models sharing a `--use_cache` file read each other's
        answers. It sets the table on lm-eval's `SqliteDict` (`tablename`, `conn`), its internals.
        Rows a killed run left unreadable are dropped here (they are computed again): `CachingLM`
        would fail on the first one it reads.
        """
        db = getattr(cache_hook, "dbdict", None)
        if db is not None:
            db.tablename = f"{self.table_prefix}_{self.fingerprint}"
            try:
                db.conn.execute(
                    f'CREATE TABLE IF NOT EXISTS "{db.tablename}" (key TEXT PRIMARY KEY, value BLOB)'
                )
                dropped = self._drop_undecodable(db)
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
                    dropped,
                    db.tablename,
                )
            log.info("Response cache %s: table %s for this model", db.filename, db.tablename)
        super().set_cache_hook(cache_hook)

    @staticmethod
    def _drop_undecodable(db) -> int:
        """Delete the rows of `db`'s table that its `decode` cannot read; how many there were."""
        bad = []
        for key, value in db.conn.select(f'SELECT key, value FROM "{db.tablename}"'):
            try:
                db.decode(value)
            except Exception:  # any failure to unpickle makes the row unusable
                bad.append(key)
        for key in bad:
            db.conn.execute(f'DELETE FROM "{db.tablename}" WHERE key = ?', (key,))
        return len(bad)
