"""`trust-hf`: lm-eval's HF model with alias resolution, compression on load, model identity, a
per-model cache and generation that shares work across samples and common prefixes.

lm-eval's `--use_cache` keys a response by (request type, prompt, generation kwargs) only, so two
models sharing a cache file would share answers. `trust-hf` moves its rows into a table named by
its identity (weights hash, load arguments), which works with both `lm_eval` and `lm-eval-trust`,
and keeps every sampled generation there too, so a killed run resumes (`sample_store`). Samples
are seeded from the run's seed (`--seed`), recorded as `sampling_seed`. Generation is
`generation.SharedGeneration`; the identity is `identity.model_identity`.
"""

from __future__ import annotations

import logging
from importlib.metadata import version
from pathlib import Path

import psutil
import torch
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from lm_eval_trust.compression import CompressionSpec
from lm_eval_trust.model_adapters import embedded
from lm_eval_trust.model_adapters.attention import use_grouped_sdpa
from lm_eval_trust.model_adapters.batching import check_batch_size, cpu_batch_size
from lm_eval_trust.model_adapters.compress import compressed_checkpoint
from lm_eval_trust.model_adapters.formats import check_backend, detect_format, measured_weights
from lm_eval_trust.model_adapters.generation import SharedGeneration
from lm_eval_trust.model_adapters.identity import fingerprint, model_identity, weights_sha256
from lm_eval_trust.model_adapters.prefix_cache import PrefixCache
from lm_eval_trust.model_adapters.response_cache import ModelTable
from lm_eval_trust.workarounds import decompress_now, load_dtype

log = logging.getLogger(__name__)


def compress_base(base: str, spec: CompressionSpec, save_dir: str | None = None) -> tuple[str, dict]:
    """The compressed checkpoint of `base` (cached) and what was measured on it."""
    local = Path(base)
    base_hash = weights_sha256(local) if local.is_dir() else f"hub:{base}"
    path, metadata = compressed_checkpoint(base, base_hash, spec, save_dir)
    return str(path), metadata


@register_model("trust-hf")
class TrustHFLM(ModelTable, SharedGeneration, HFLM):
    table_prefix = "trust_hf"

    def __init__(
        self,
        pretrained: str,
        dtype="auto",
        device: str | None = "cuda",
        save_dir: str | None = None,
        **kwargs,
    ):
        # lm-eval seeds torch from --seed before it creates the model; compression may reseed.
        self.sampling_seed = torch.initial_seed()
        check_batch_size(kwargs.get("batch_size", 1))
        spec = CompressionSpec.pop_from(kwargs)
        self.alias = pretrained if isinstance(pretrained, str) and pretrained in embedded.ALIASES else None
        resolved = embedded.resolve(pretrained) if isinstance(pretrained, str) else pretrained
        self.compression = None
        if spec.compress != "none":
            resolved, self.compression = compress_base(resolved, spec, save_dir)
        self.checkpoint_format = detect_format(resolved) if isinstance(resolved, str) else "in-memory"
        check_backend(self.checkpoint_format)
        dtype = load_dtype(dtype, device)
        super().__init__(pretrained=resolved, dtype=dtype, device=device, **kwargs)
        self.identity = model_identity(resolved, self.alias, dtype, kwargs, self._model.config, self.revision)
        self.weights_measured = measured_weights(self._model, self.checkpoint_format)
        decompress_now(self._model)
        use_grouped_sdpa(self._model)
        self._prefixes = PrefixCache()
        self.fingerprint = fingerprint(self.identity)

    def _detect_batch_size(self, requests=None, pos: int = 0):
        """On CPU, computed from free memory (see `batching.cpu_batch_size`); elsewhere lm-eval's probe.

        lm-eval 0.4.13's probe runs `max_batch_size` x the model's maximum length and halves on
        out-of-memory: on CPU, minutes of compute and, with memory overcommit, the OOM killer.
        """
        if self.device.type != "cpu":
            return super()._detect_batch_size(requests, pos)
        if requests:
            _, context_enc, continuation_enc = requests[pos]
            seq_len = min(len(context_enc) + len(continuation_enc), self.max_length)
        else:
            seq_len = self.max_length
        return self._cpu_batch_size(seq_len, logit_rows=seq_len)

    def _cpu_batch_size(self, seq_len: int, logit_rows: int) -> int:
        available = psutil.virtual_memory().available
        size = cpu_batch_size(self.model.config, seq_len, logit_rows, available, self.max_batch_size)
        log.info(
            "batch_size=auto on CPU: %d sequences of %d tokens (%.1f GB free)", size, seq_len, available / 1e9
        )
        return size

    def get_model_info(self) -> dict:
        return {
            **super().get_model_info(),
            **self.identity,
            "computes_in": str(self._model.dtype).removeprefix("torch."),
            "compression": self.compression,
            "weights_measured": self.weights_measured,
            "model_fingerprint": self.fingerprint,
            "sampling_seed": self.sampling_seed,
            "lm_eval_trust_version": version("lm-eval-trust"),
        }
