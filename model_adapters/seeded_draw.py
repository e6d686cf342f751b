"""`trust-hf`'s seeded samples: each row of a batch drawn with a generator of its own.

transformers' `generate` samples every row with one `torch.multinomial` call on the global
generator, so a row's tokens depend on the other rows of its batch. Here `generate` runs greedy
over one more logits processor, `SeededDraw`: it applies the sampling warpers `generate` would
(`warpers`), draws each row's token by inverse CDF with one uniform from the row's own generator,
and leaves only that token possible. A row's tokens then depend on its seed and its logits alone.
"""

from __future__ import annotations

import torch
from transformers import GenerationConfig
from transformers.generation.logits_process import (
    LogitsProcessor,
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

# What transformers 5.17.0's `generate` samples with when neither the request nor the model's
# generation config sets it (its global defaults).
DEFAULTS = {"temperature": 1.0, "top_k": 50, "top_p": 1.0, "min_p": None}
# Sampling settings `generate` has that the draw does not apply: refused rather than ignored.
UNSUPPORTED = {
    "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "top_h": None, "num_beams": 1,
    "num_return_sequences": 1, "watermarking_config": None,
}  # fmt: skip


def unsupported(config: GenerationConfig, kwargs: dict) -> list[str]:
    """The settings, of the request or else of the model's generation config, the draw cannot apply."""
    values = {name: kwargs.get(name, getattr(config, name, None)) for name in UNSUPPORTED}
    return [f"{n}={v}" for n, v in values.items() if v is not None and v != UNSUPPORTED[n]]


def warpers(config: GenerationConfig, kwargs: dict) -> LogitsProcessorList:
    """The warpers `generate` samples through, in its order, from the request's settings over the
    model's generation config over transformers' defaults."""
    value = {name: getattr(config, name, None) for name in DEFAULTS}
    value = {
        name: kwargs.get(name, default if value[name] is None else value[name])
        for name, default in DEFAULTS.items()
    }
    out = LogitsProcessorList()
    if value["temperature"] != 1.0:
        out.append(TemperatureLogitsWarper(value["temperature"]))
    if value["top_k"]:
        out.append(TopKLogitsWarper(top_k=value["top_k"]))
    if value["top_p"] < 1.0:
        out.append(TopPLogitsWarper(top_p=value["top_p"]))
    if value["min_p"] is not None:
        out.append(MinPLogitsWarper(min_p=value["min_p"]))
    return out


class SeededDraw(LogitsProcessor):
    """Row i's next token drawn from the warped distribution with generator `seeds[i]`; every other
    token's score set to -inf, so greedy decoding takes the drawn one."""

    def __init__(self, processors: LogitsProcessorList, seeds: list[int]):
        self.processors = processors
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        cdf = torch.softmax(self.processors(input_ids, scores.float()), dim=-1).double().cumsum(-1)
        u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in self.generators])
        tokens = torch.searchsorted(cdf, u.to(cdf.device)[:, None] * cdf[:, -1:], right=True)
        drawn = torch.full_like(scores, -float("inf"))
        return drawn.scatter_(1, tokens.clamp_max(cdf.shape[-1] - 1), 0.0)


def seeded(config: GenerationConfig, kwargs: dict, seeds: list[int]) -> dict:
    """`generate` arguments that draw row i with `seeds[i]`: greedy over `SeededDraw`; the other
    logits processors (repetition penalty, ...) still apply before it, as when sampling."""
    sampling = {k: kwargs.pop(k) for k in (*DEFAULTS, "do_sample") if k in kwargs}
    draw = SeededDraw(warpers(config, sampling), seeds)
    return {**kwargs, "do_sample": False, "logits_processor": LogitsProcessorList([draw])}
