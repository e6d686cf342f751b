"""`trust-hf`: lm-eval's HF model with alias resolution, compression on load, model identity
(`identity`), its own cache table (`response_cache`) and the generation rules of
`generation.TrustGeneration`, each sampled row drawn with a generator of its own (`seeded_draw`).
"""

from __future__ import annotations

from pathlib import Path

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from lm_eval_trust.compression import CompressionSpec
from lm_eval_trust.model_adapters import seeded_draw
from lm_eval_trust.model_adapters.compress import compressed_checkpoint
from lm_eval_trust.model_adapters.formats import check_backend, measured_weights
from lm_eval_trust.model_adapters.generation import TrustGeneration
from lm_eval_trust.model_adapters.identity import Identified, weights_sha256
from lm_eval_trust.model_adapters.response_cache import ModelTable
from lm_eval_trust.workarounds import decompress_now, load_dtype


def compress_base(base: str, spec: CompressionSpec, save_dir: str | None = None) -> tuple[str, dict]:
    """The compressed checkpoint of `base` (cached) and what was measured on it."""
    local = Path(base)
    base_hash = weights_sha256(local) if local.is_dir() else f"hub:{base}"
    path, metadata = compressed_checkpoint(base, base_hash, spec, save_dir)
    return str(path), metadata


@register_model("trust-hf")
class TrustHFLM(Identified, ModelTable, TrustGeneration, HFLM):
    table_prefix = "trust_hf"
    engine_name, context_arg = "hf", "max_length"
    prompts_per_call = 1  # a prompt's samples together, and nothing else, in a batch

    def __init__(self, pretrained, dtype="auto", device="cuda", save_dir: str | None = None, **kwargs):
        resolved = self._checkpoint(pretrained, kwargs, save_dir, compress_base)
        check_backend(self.checkpoint_format)
        dtype = load_dtype(dtype, device)
        super().__init__(pretrained=resolved, dtype=dtype, device=device, **kwargs)
        measured = measured_weights(self._model, self.checkpoint_format)
        decompress_now(self._model)
        self._identify(
            resolved, dtype, kwargs, self._model.config, self.revision, measured, self._model.dtype
        )

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
        if self._row_seeds is not None:
            mask = kwargs["attention_mask"].bool()
            rows = [tuple(row[keep].tolist()) for row, keep in zip(context, mask, strict=True)]
            kwargs = seeded_draw.seeded(self.model.generation_config, kwargs, self._take_seeds(rows))
        return super()._model_generate(context, max_length, stop, **kwargs)

    def _batch_rows(self) -> int:
        """`--batch_size auto` for greedy prompts: sized once a batch plan (`_detect_batch_size`)."""
        return int(self.batch_size) if self.batch_size != "auto" else self._detect_batch_size()

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
        """`auto` on CPU is one sequence a call: lm-eval's probe runs `max_batch_size` x the model's
        length (minutes, or the OOM killer), and a padded batch only adds work there (transformers'
        masked attention copies every key/value head: 546 s against 50 s, docs/performance.md)."""
        return 1 if self.device.type == "cpu" else super()._detect_batch_size(requests, pos)
