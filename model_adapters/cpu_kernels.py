"""vLLM's compiled CPU kernels for RMSNorm, in half precision without torch.compile.

On CPUs vLLM (0.32) computes RMSNorm with plain PyTorch ops (five kernels and two dtype copies a call)
and leaves fusing them to torch.compile. trust-vllm runs eager on CPU (compiling cost 56-90 s at
every start), where those ops took about a fifth of bfloat16 greedy time on the embedded model.
vLLM's CPU build ships the fused kernels its GPU path calls (`_C.rms_norm`, `_C.fused_add_rms_norm`);
`use_kernels` puts them in their place where, on this CPU, they agree with vLLM's ops and give a row
the same result whatever other rows share the call (the check `batch_invariant` makes for linear
layers). Layers of a width that fails keep vLLM's ops. (Its SiLU-and-multiply kernel was slower
than the PyTorch ops on an AMX CPU, so activations keep them.)
"""

from __future__ import annotations

import torch

from lm_eval_trust.model_adapters.batch_invariant import invariant

# How far the kernel may be from vLLM's ops in half precision (another order of rounding).
TOLERANCE = {"rtol": 2e-2, "atol": 2e-2}


def rms_norm(module: torch.nn.Module):
    """`module.forward` (vLLM's RMSNorm: normalize, or add the residual first) on the `_C` kernels."""
    original, weight, epsilon = module.forward, module.weight.data, module.variance_epsilon

    def forward(x: torch.Tensor, residual: torch.Tensor | None = None):
        if not x.is_contiguous() or (residual is not None and not residual.is_contiguous()):
            return original(x, residual)
        if residual is None:
            out = torch.empty_like(x)
            torch.ops._C.rms_norm(out, x, weight, epsilon)
            return out
        torch.ops._C.fused_add_rms_norm(x, residual, weight, epsilon)  # in place, as on GPUs
        return x, residual

    return forward


def agrees(original, kernel, width: int, dtype: torch.dtype) -> bool:
    """Whether `kernel` is close to `original`, and gives each row one result whatever shares its
    call, alone and with a residual to add (both of its outputs compared)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, width, generator=generator).to(dtype)
    for residual in (False, True):

        def run(forward, residual=residual):
            if residual:
                return lambda x: torch.cat(forward(x.clone(), x.flip(-1).clone()), dim=-1)
            return lambda x: forward(x.clone())

        if not torch.allclose(run(kernel)(x).float(), run(original)(x).float(), **TOLERANCE):
            return False
        if not invariant(run(kernel), width, generator, dtype):
            return False
    return True


def use_kernels(model: torch.nn.Module, dtype: torch.dtype) -> dict:
    """Put the `_C` kernels in place of vLLM's RMSNorm ops in `model` (computing in `dtype`) where
    they pass the check (run inside vLLM's worker through `LLM.apply_model`). Returns how many layers
    took them and the widths that kept vLLM's ops."""
    from vllm.model_executor.layers.layernorm import RMSNorm

    passed: dict[int, bool] = {}
    taken = 0
    for module in model.modules():
        if type(module) is not RMSNorm or not module.has_weight or module.variance_size_override:
            continue
        width, kernel = module.weight.shape[0], rms_norm(module)
        if width not in passed:
            passed[width] = agrees(module.forward, kernel, width, dtype)
        if passed[width]:
            module.forward = kernel
            taken += 1
    return {
        "rms_norm_layers": taken,
        "kept_vllm_ops_at_width": sorted(w for w, ok in passed.items() if not ok),
    }
