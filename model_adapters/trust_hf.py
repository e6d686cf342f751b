"""`trust-hf`: lm-eval's HF model with alias resolution, model identity and a per-model cache.

lm-eval's `--use_cache` keys a response by (request type, prompt, generation kwargs) only, so two
models sharing a cache file would share answers. `trust-hf` moves its rows into a table named by
its identity (weights hash, load arguments), which works with both `lm_eval` and `lm-eval-trust`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from importlib.metadata import version
from pathlib import Path

import torch
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from lm_eval_trust.data import cache_root
from lm_eval_trust.model_adapters import embedded
from lm_eval_trust.model_adapters.compress import CompressionSpec, compressed_checkpoint, target_linears
from lm_eval_trust.model_adapters.formats import check_backend, detect_format, weight_statistics

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


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
    memo.parent.mkdir(parents=True, exist_ok=True)
    partial = memo.with_name(f".{memo.name}.{os.getpid()}")
    partial.write_text(digest.hexdigest())
    os.replace(partial, memo)  # concurrent runs never read a half-written memo
    return digest.hexdigest()


def compress_base(base: str, spec: CompressionSpec, save_dir: str | None = None) -> tuple[str, dict]:
    """The compressed checkpoint of `base` (cached) and what was measured on it."""
    local = Path(base)
    base_hash = weights_sha256(local) if local.is_dir() else f"hub:{base}"
    path, metadata = compressed_checkpoint(base, base_hash, spec, save_dir)
    return str(path), metadata


@register_model("trust-hf")
class TrustHFLM(HFLM):
    def __init__(
        self,
        pretrained: str,
        dtype="auto",
        device: str | None = "cuda",
        save_dir: str | None = None,
        **kwargs,
    ):
        spec = CompressionSpec.pop_from(kwargs)
        self.alias = pretrained if isinstance(pretrained, str) and pretrained in embedded.ALIASES else None
        resolved = embedded.resolve(pretrained) if isinstance(pretrained, str) else pretrained
        self.compression = None
        if spec.compress != "none":
            resolved, self.compression = compress_base(resolved, spec, save_dir)
        self.checkpoint_format = detect_format(resolved) if isinstance(resolved, str) else "in-memory"
        check_backend(self.checkpoint_format)
        on_cpu = not torch.cuda.is_available() or str(device).startswith("cpu")
        if dtype == "auto" and on_cpu:
            # bf16 matmuls are hundreds of times slower than fp32 on CPUs without native bf16.
            dtype = "float32"
        super().__init__(pretrained=resolved, dtype=dtype, device=device, **kwargs)
        self.identity = self._identity(resolved, dtype, kwargs)
        self.weights_measured = self._measure_weights()
        self.fingerprint = hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()[:20]

    def _identity(self, resolved, dtype, kwargs) -> dict:
        local = Path(resolved) if isinstance(resolved, str) else None
        identity = {
            "model_path": str(local.resolve()) if local and local.is_dir() else str(resolved),
            "model_alias": self.alias,
            "dtype": str(dtype),
            "load_args": {
                k: str(v)
                for k, v in sorted(kwargs.items())
                if k in ("revision", "subfolder", "peft", "delta", "gguf_file", "tokenizer")
            },
        }
        if local and local.is_dir():
            identity["weights_sha256"] = weights_sha256(local)
        else:
            identity["model_commit"] = getattr(self._model.config, "_commit_hash", None)
            identity["revision"] = self.revision
        return identity

    def _measure_weights(self) -> dict:
        """What the loaded weights are (sparsity, fake-quantization levels), whoever compressed them."""
        sizes = {m.in_features for m in target_linears(self._model).values()}
        group = next((g for g in (128, 64, 32, 16, 8) if all(s % g == 0 for s in sizes)), None)
        return {"checkpoint_format": self.checkpoint_format, **weight_statistics(self._model, group)}

    def set_cache_hook(self, cache_hook) -> None:
        """Point lm-eval's response cache at this model's own table in the same sqlite file."""
        db = getattr(cache_hook, "dbdict", None)
        if db is not None:
            db.tablename = f"trust_hf_{self.fingerprint}"
            db.conn.execute(f'CREATE TABLE IF NOT EXISTS "{db.tablename}" (key TEXT PRIMARY KEY, value BLOB)')
            db.commit()
            log.info("Response cache %s: table %s for this model", db.filename, db.tablename)
        super().set_cache_hook(cache_hook)

    def get_model_info(self) -> dict:
        return {
            **super().get_model_info(),
            **self.identity,
            "compression": self.compression,
            "weights_measured": self.weights_measured,
            "model_fingerprint": self.fingerprint,
            "lm_eval_trust_version": version("lm-eval-trust"),
        }
