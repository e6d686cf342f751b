"""`trust-hf`: lm-eval's HF model with alias resolution, compression on load, model identity, a
per-model cache and the generation rules of `generation.TrustGeneration`.

lm-eval's `--use_cache` keys a response by (request type, prompt, generation kwargs) only, so two
models sharing a cache file would share answers. `trust-hf` moves its rows into a table named by
its identity (weights hash, load arguments), which works with both `lm_eval` and `lm-eval-trust`,
and keeps every sampled generation there too, so a killed run resumes (`sample_store`). Samples
are seeded from the run's seed (`--seed`), recorded as `sampling_seed`, each row with a generator
of its own (`seeded_draw`); the identity is `identity.model_identity`.
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
from lm_eval_trust.model_adapters import embedded, seeded_draw
from lm_eval_trust.model_adapters.compress import compressed_checkpoint
from lm_eval_trust.model_adapters.formats import check_backend, detect_format, measured_weights
from lm_eval_trust.model_adapters.generation import TrustGeneration, check_batch_size
from lm_eval_trust.model_adapters.identity import fingerprint, model_identity, weights_sha256
from lm_eval_trust.model_adapters.response_cache import ModelTable
from lm_eval_trust.workarounds import decompress_now, load_dtype

log = logging.getLogger(__name__)


def compress_base(base: str, spec: CompressionSpec, save_dir: str | None = None) -> tuple[str, dict]:
    """The compressed checkpoint of `base` (cached) and what was measured on it."""
    local = Path(base)
    base_hash = weights_sha256(local) if local.is_dir() else f"hub:{base}"
    path, metadata = compressed_checkpoint(base, base_hash, spec, save_dir)
    return str(path), metadata


def cpu_batch_size(
    config, seq_len: int, logit_rows: int, available_bytes: int, max_batch_size: int, elem_bytes: int = 4
) -> int:
    """The largest batch whose key/value cache, activations and logits fit in half the free memory.

    lm-eval's `auto` probes by running a batch of `max_batch_size` x the model's maximum length and
    halving on an out-of-memory error; on a CPU that means minutes of compute at 8k tokens and, with
    memory overcommit, the kernel's OOM killer instead of an error. So on CPU the size is computed.
    `logit_rows` is how many positions per sequence produce vocabulary logits (1 when generating).
    """
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    per_token = (
        2 * config.num_hidden_layers * kv_heads * head_dim  # the key/value cache
        + 4 * config.hidden_size
        + 3 * getattr(config, "intermediate_size", 4 * config.hidden_size)  # live activations
    )
    per_sequence = elem_bytes * (seq_len * per_token + logit_rows * config.vocab_size)
    return max(1, min(max_batch_size, available_bytes // 2 // per_sequence))


@register_model("trust-hf")
class TrustHFLM(ModelTable, TrustGeneration, HFLM):
    table_prefix = "trust_hf"
    engine_name, context_arg = "hf", "max_length"
    prompts_per_call = 1  # a prompt's samples together, and nothing else, in a batch

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
        self.fingerprint = fingerprint(self.identity)

    def _check_settings(self, gen_kwargs: dict) -> None:
        super()._check_settings(gen_kwargs)
        if gen_kwargs.get("do_sample") and (
            bad := seeded_draw.unsupported(self.model.generation_config, gen_kwargs)
        ):
            raise ValueError(
                f"trust-hf draws seeded samples with temperature, top_k, top_p and min_p; {', '.join(bad)} "
                f"(in {gen_kwargs} or the model's generation config) would be ignored: drop it"
            )

    def _model_generate(self, context, max_length, stop, **kwargs):
        """lm-eval's call of `generate`; for samples, each row drawn with its own seed."""
        mask = kwargs["attention_mask"].bool()
        seeds = self._take_seeds([tuple(row[keep].tolist()) for row, keep in zip(context, mask, strict=True)])
        if seeds is not None:
            kwargs = seeded_draw.seeded(self.model.generation_config, kwargs, seeds)
        return super()._model_generate(context, max_length, stop, **kwargs)

    def _batch_rows(self, longest: int) -> int:
        """`--batch_size auto` for greedy prompts: lm-eval's probe once a batch plan, but one prompt
        at a time on CPU, where reading a prompt is compute-bound and a padded batch takes
        transformers' masked attention, which copies every key/value head: 40 greedy trust prompts
        took 546 s in batches, 50 s one by one (docs/performance.md)."""
        if self.batch_size != "auto":
            return int(self.batch_size)
        return 1 if self.device.type == "cpu" else self._detect_batch_size()

    def _engine_generate(self, requests, tokens: dict, seeds=None) -> list[str]:
        """With `--batch_size auto`, each call as one batch (the rules sized it: lm-eval would probe
        at every call): the greedy batch planned, or a prompt's samples all together."""
        if self.batch_size != "auto":
            return super()._engine_generate(requests, tokens, seeds)
        self.batch_size_per_gpu = len(requests)
        try:
            return super()._engine_generate(requests, tokens, seeds)
        finally:
            self.batch_size_per_gpu = "auto"

    def _detect_batch_size(self, requests=None, pos: int = 0):
        """On CPU, computed from free memory (`cpu_batch_size`); elsewhere lm-eval's probe, which on
        CPU runs `max_batch_size` x the model's maximum length: minutes, or the OOM killer."""
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
