"""What model a `trust-hf` run evaluated: its checkpoint, weights hash and load arguments.

lm-eval's results name a model by its `pretrained=` string, which says nothing about the weights
behind a local path. The identity recorded here (and its short `fingerprint`, which names the
model's own response-cache table) changes whenever the weights or the load arguments do.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lm_eval_trust.atomic import write_text
from lm_eval_trust.data import cache_root

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
# Load arguments that change which weights or tokenizer are loaded.
IDENTITY_ARGS = ("revision", "subfolder", "peft", "delta", "gguf_file", "tokenizer")


def weights_sha256(path: Path) -> str:
    """sha256 over a checkpoint's weight files, memoized by (path, size, mtime) in the user cache."""
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    stamp = json.dumps([[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files])
    memo = cache_root() / "identity" / (hashlib.sha256(stamp.encode()).hexdigest() + ".txt")
    if memo.is_file():
        return memo.read_text().strip()
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.relative_to(path).as_posix().encode() + b"\0")
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                digest.update(chunk)
    write_text(memo, digest.hexdigest())
    return digest.hexdigest()


def model_identity(resolved, alias: str | None, dtype, load_args: dict, config, revision) -> dict:
    """A local checkpoint by its resolved path and weights hash; a hub model by its commit."""
    local = Path(resolved) if isinstance(resolved, str) else None
    identity = {
        "model_path": str(local.resolve()) if local and local.is_dir() else str(resolved),
        "model_alias": alias,
        "dtype": str(dtype),
        "load_args": {k: str(v) for k, v in sorted(load_args.items()) if k in IDENTITY_ARGS},
    }
    if local and local.is_dir():
        identity["weights_sha256"] = weights_sha256(local)
    else:
        identity["model_commit"] = getattr(config, "_commit_hash", None)
        identity["revision"] = revision
    return identity


def fingerprint(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
