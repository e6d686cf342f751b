"""The check that lets vLLM's RMSNorm kernels replace its PyTorch ops (`model_adapters/cpu_kernels.py`),
on hand-made kernels."""

import torch

from lm_eval_trust.model_adapters.cpu_kernels import agrees

WEIGHT = torch.linspace(0.5, 1.5, 16)


def reference(x, residual=None):
    """RMSNorm as vLLM's ops compute it: normalize (after adding the residual) and scale."""
    if residual is not None:
        x = x + residual
    out = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * WEIGHT
    return out if residual is None else (out, x)


def unscaled(x, residual=None):
    """A kernel that forgets the weight: not what vLLM computes."""
    out = reference(x, residual)
    return (out[0] / WEIGHT, out[1]) if residual is not None else out / WEIGHT


def by_row_count(x, residual=None):
    """Close to vLLM's ops, but a row's result depends on how many rows share its call."""
    out = reference(x, residual)
    shift = 1e-4 * (x.shape[0] > 1)
    return (out[0] + shift, out[1]) if residual is not None else out + shift


def test_the_same_computation_passes():
    assert agrees(reference, reference, 16, torch.float32)


def test_a_kernel_far_from_vllm_ops_fails():
    assert not agrees(reference, unscaled, 16, torch.float32)


def test_a_kernel_whose_rows_depend_on_the_call_fails():
    assert not agrees(reference, by_row_count, 16, torch.float32)


def test_the_residual_form_is_checked_too():
    def wrong_residual(x, residual=None):
        return reference(x) if residual is None else (reference(x + residual), x)  # not the sum

    assert not agrees(reference, wrong_residual, 16, torch.float32)
