"""What model a run evaluated: its checkpoint (alias resolved, compressed on the fly), weights hash
and load arguments, shared by `trust-hf` and `trust-vllm` (`Identified`).

lm-eval's results name a model by its `pretrained=` string, which says nothing about the weights
behind a local path. The identity recorded here (and its short `fingerprint`, which names the
model's own response-cache table) changes whenever the weights or the load arguments do.
"""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import version
from pathlib import Path

import torch

from lm_eval_trust.atomic import write_text
from lm_eval_trust.compression import CompressionSpec
from lm_eval_trust.data import cache_root
from lm_eval_trust.model_adapters import embedded
from lm_eval_trust.model_adapters.formats import detect_format
from lm_eval_trust.model_adapters.generation import check_batch_size

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


class Identified:
    """Mixin for `trust-hf` and `trust-vllm`: the checkpoint a run loads, and what its results record
    of the model (lm-eval's `get_model_info`)."""

    def _checkpoint(self, pretrained, kwargs: dict, save_dir: str | None, compress) -> str:
        """Before any weights load: the run's seed (lm-eval seeds torch from `--seed` before it makes
        the model), the batch size checked, and the checkpoint: an alias resolved, compressed on the
        fly by `compress(base, spec, save_dir)`, or one compressed earlier (its compression.json)."""
        self.sampling_seed = torch.initial_seed()
        check_batch_size(kwargs.get("batch_size", 1))
        spec = CompressionSpec.pop_from(kwargs)
        named = isinstance(pretrained, str)
        self.alias = pretrained if named and pretrained in embedded.ALIASES else None
        resolved = embedded.resolve(pretrained) if named else pretrained
        self.compression = None
        if spec.compress != "none":
            resolved, self.compression = compress(resolved, spec, save_dir)
        elif named and Path(resolved, "compression.json").is_file():
            self.compression = json.loads(Path(resolved, "compression.json").read_text())
        self.checkpoint_format = detect_format(resolved) if named else "in-memory"
        return resolved

    def _identify(self, resolved, dtype, kwargs: dict, config, revision, measured, computes_in) -> None:
        self.identity = model_identity(resolved, self.alias, dtype, kwargs, config, revision)
        self.fingerprint = fingerprint(self.identity)
        self.weights_measured, self.computes_in = measured, str(computes_in).removeprefix("torch.")

    def get_model_info(self) -> dict:
        """lm-eval's record of the model (HFLM's, where it has one), with ours."""
        ours = {
            k: getattr(self, k) for k in ("computes_in", "compression", "weights_measured", "sampling_seed")
        }
        info = {**getattr(super(), "get_model_info", dict)(), **self.identity, **ours}
        return {
            **info,
            "model_fingerprint": self.fingerprint,
            "lm_eval_trust_version": version("lm-eval-trust"),
        }
