"""`trust-hf`'s generation: work shared across samples and common prefixes, rows that leave the
batch when they finish, greedy answers equal to lm-eval's `hf`, samples independent of batching.

`SharedGeneration` is a mixin for lm-eval's `HFLM`: it overrides `generate_until` and uses the
host's tokenizer, model and settings, plus what `TrustHFLM` provides: `_prefixes` (a
`PrefixCache`), `_cpu_batch_size(seq_len, logit_rows)` and `sampling_seed` (the run's seed).
"""

from __future__ import annotations

import json
import logging

import torch
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
from tqdm import tqdm
from transformers import DynamicCache
from transformers.generation.configuration_utils import GenerationMode
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from lm_eval_trust.model_adapters.batching import Batch, Unit, plan_batches
from lm_eval_trust.model_adapters.sample_store import SampleStore, sample_seed

log = logging.getLogger(__name__)

# On CPU, a prompt longer than this (with no prefix to share) is generated alone: measured with
# SmolLM2 on 2 cores, 4 fairness prompts of 4,140 tokens took 69 s batched and 42 s one by one,
# while prompts of 700-900 tokens were 2.4x faster batched.
CPU_SOLO_PROMPT_TOKENS = 1024
# Rows per prefill pass over the prompts' unshared parts (see `SharedGeneration._prefill`).
PREFILL_ROWS = 16
# The logits processors of transformers 5.17.0's sampling that act on each row's scores alone;
# with any other processor (repetition penalty, typical_p, ...) sampling goes through `generate`.
SAMPLING_WARPERS = (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, MinPLogitsWarper)


def _widen(states: torch.Tensor, prefix: int, start: int) -> torch.Tensor:
    """Cached states of a prefill pass that began at column `start`, with masked zeros between the
    shared prefix and that column, so every pass has the batch's width."""
    gap = states.new_zeros(*states.shape[:2], start - prefix, states.shape[3])
    return torch.cat([states[..., :prefix, :], gap, states[..., prefix:, :]], dim=2)


def _argmax(logits: torch.Tensor, alive: list[int]) -> torch.Tensor:
    return logits.argmax(-1)


def _sampler(processors: LogitsProcessorList, seeds: list[int]):
    """Each row's token drawn from `generate`'s distribution (its warpers on float32 logits, then
    softmax) by inverse CDF with one uniform from the row's own generator, so a row's tokens depend
    on its seed and its logits only, never on the other rows of the batch."""
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]

    def choose(logits: torch.Tensor, alive: list[int]) -> torch.Tensor:
        cdf = torch.softmax(processors(None, logits.float()), dim=-1).double().cumsum(-1)
        u = torch.cat([torch.rand(1, generator=generators[row], dtype=torch.float64) for row in alive])
        tokens = torch.searchsorted(cdf, u.to(cdf.device)[:, None] * cdf[:, -1:], right=True)[:, 0]
        return tokens.clamp_max(cdf.shape[-1] - 1)

    return choose


class SharedGeneration:
    """lm-eval's `generate_until`, sharing work across samples and prefixes (see the module)."""

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """lm-eval's generation with the work shared across samples and common prefixes.

        lm-eval passes the same request K times for K samples (`repeats`). Here the K copies form
        one unit: a greedy prompt is generated once and its answer copied; a sampled prompt is read
        once (its key/value cache computed at batch 1, then repeated for its K rows) and sampled K
        times in the same batch. Batches count sequences, so K larger than the batch size is split
        across batches. Prompts sharing a long prefix (fixed demonstrations, a system prompt) are
        batched together and the prefix is computed once (`batching.plan_batches`). Otherwise it is
        lm-eval's batching: grouped by generation settings, longest prompts first.

        Greedy answers equal the unshared path's (positions follow the attention mask, padding
        between prefix and suffix is masked; tested against stock `hf`). A sample is drawn with its
        own generator, seeded from (run seed, prompt, settings, sample index) (`sample_store`), so it
        is the same at any batch size or composition, with or without a shared prefix, and after a
        resume, as far as the model's logits are (a row's logits can differ in the last bits with
        the batch's shape, which changes a draw only when it falls that close to a boundary of the
        token's CDF; bf16 on a GPU has more such bits than fp32). The run seed is lm-eval's `--seed`
        (default 1234). With `--use_cache`, each sample is stored under those four as it is
        produced; a rerun reads them and draws only the missing ones.
        """
        if self.backend != "causal":
            return super().generate_until(requests, disable_tqdm)
        store = SampleStore(self.cache_hook, self.sampling_seed)
        results: list[str | None] = [None] * len(requests)
        positions: dict[tuple[str, str], list[int]] = {}
        for i, req in enumerate(requests):
            context, gen_kwargs = req.args
            positions.setdefault((json.dumps(gen_kwargs, sort_keys=True, default=str), context), []).append(i)
        by_settings: dict[str, list[tuple[str, list[int]]]] = {}
        for (settings, context), where in positions.items():
            by_settings.setdefault(settings, []).append((context, where))
        settings_of = {s: requests[entries[0][1][0]].args[1] for s, entries in by_settings.items()}
        decodings = {s: self._decoding(gen_kwargs) for s, gen_kwargs in settings_of.items()}
        pbar = tqdm(
            total=len(requests),
            disable=disable_tqdm or self.rank != 0,
            desc="Running generate_until requests",
        )
        for settings, entries in by_settings.items():
            gen_kwargs = settings_of[settings]
            kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
            sampled = bool(kwargs.get("do_sample"))
            units = []
            for context, where in entries:
                if not sampled:
                    slots = [(tuple(where), None)]
                else:
                    slots = []
                    for index, pos in enumerate(where):
                        results[pos] = store.get(context, gen_kwargs, index)
                        if results[pos] is None:
                            slots.append(((pos,), index))
                        else:
                            pbar.update(1)
                if slots:
                    units.append(
                        Unit(self._encode_context(context, kwargs), tuple((context, *s) for s in slots))
                    )
            self._generate_units(units, gen_kwargs, decodings[settings], results, store, pbar)
        pbar.close()
        return results

    def _decoding(self, gen_kwargs: dict) -> tuple[str, LogitsProcessorList | None]:
        """How requests with these settings are decoded: "argmax" (greedy, no logits processing),
        "sample" (the seeded loop, with these warpers) or "generate" (transformers' `generate`).

        What lm-eval 0.4.13's `HFLM._model_generate` passes to `generate`, merged with the model's
        generation config and turned into processors by transformers 5.17.0's own private steps of
        `generate` (`top_k` 50 when neither sets it, ...): the loop applies exactly what `generate`
        would, and anything else is left to `generate`. A sampling temperature <= 0 is refused here.
        """
        kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
        del kwargs["until"], kwargs["max_gen_toks"]
        temperature = float(kwargs.get("temperature", 0.0))
        if kwargs["do_sample"] and not temperature > 0:
            raise ValueError(
                f"Generation settings {gen_kwargs} sample (do_sample=true) at temperature={temperature:g}, "
                "which cannot sample; give a temperature above 0 (e.g. --gen_kwargs temperature=1.0), "
                "or do_sample=false for one greedy answer per prompt"
            )
        if not kwargs["do_sample"]:
            kwargs.pop("temperature", None)
        model = self.model
        config, unused = model._prepare_generation_config(
            None, pad_token_id=self.tokenizer.pad_token_id, use_cache=True, **kwargs
        )
        if unused:
            return "generate", None
        model._prepare_special_tokens(config, kwargs_has_attention_mask=True, device=self.device)
        processors = model._get_logits_processor(config, input_ids_seq_length=1, device=self.device)
        mode = config.get_generation_mode()
        if mode == GenerationMode.GREEDY_SEARCH and not processors:
            return "argmax", None
        if mode == GenerationMode.SAMPLE and all(type(p) in SAMPLING_WARPERS for p in processors):
            return "sample", processors
        return "generate", None

    def _encode_context(self, context: str, kwargs: dict) -> tuple[int, ...]:
        """The prompt's tokens exactly as lm-eval's HF model would feed them (BOS, left truncation).

        A copy of what lm-eval 0.4.13's `HFLM.generate_until` does inline (no function of its own):
        if lm-eval changes it, prompts and so answers drift from stock `hf`'s.
        """
        max_ctx_len = self.max_length - kwargs.get("max_gen_toks", self.max_gen_toks)
        ids, _ = self.tok_batch_encode([context], left_truncate_len=max_ctx_len, truncation=self.truncation)
        return tuple(ids[0].tolist())

    def _generate_units(
        self, units: list[Unit], gen_kwargs: dict, decoding: tuple, results: list, store: SampleStore, pbar
    ) -> None:
        if not units:
            return
        kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
        eos = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
        max_gen_toks = kwargs.pop("max_gen_toks")
        batch_size = self.batch_size
        if decoding[0] == "generate" and kwargs.get("do_sample"):
            log.warning(
                "Sampling with %s needs logits processing the seeded loop does not do: each sample is "
                "generated alone by transformers' generate (as reproducible, slower)",
                gen_kwargs,
            )
            batch_size = 1
        elif batch_size == "auto":
            longest = max(len(u.tokens) for u in units) + max_gen_toks
            batch_size = (
                self._cpu_batch_size(longest, 1) if self.device.type == "cpu" else self._detect_batch_size()
            )
        solo_over = CPU_SOLO_PROMPT_TOKENS if self.device.type == "cpu" else None
        for batch in plan_batches(units, int(batch_size), solo_over=solo_over):
            slots = [slot for unit in batch.units for slot in unit.slots]
            seeds = [
                None if index is None else sample_seed(self.sampling_seed, context, gen_kwargs, index)
                for context, _, index in slots
            ]
            rows = self._generate_batch(batch, dict(kwargs), until, max_gen_toks, decoding, seeds)
            for (context, where, index), text in zip(slots, rows, strict=True):
                if index is not None:
                    store.put(context, gen_kwargs, index, text)
                for pos in where:
                    results[pos] = text
                self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
                pbar.update(len(where))
            store.commit()

    @torch.no_grad()
    def _generate_batch(
        self, batch: Batch, kwargs: dict, until: list[str], max_gen_toks: int, decoding: tuple, seeds: list
    ) -> list[str]:
        """One decoded text per sequence of the batch, in slot order; `seeds` has one per sequence
        (None for greedy ones)."""
        pad = self.tokenizer.pad_token_id
        p = batch.prefix
        width = max(len(u.tokens) for u in batch.units) - p
        # Prompts are left-padded after the shared prefix: [prefix][pad...][rest of the prompt].
        ids = torch.full((len(batch.units), p + width), pad if pad is not None else 0, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, unit in enumerate(batch.units):
            n = len(unit.tokens) - p
            ids[row, :p], ids[row, p + width - n :] = (
                torch.tensor(unit.tokens[:p]),
                torch.tensor(unit.tokens[p:]),
            )
            mask[row, :p], mask[row, p + width - n :] = 1, 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        mode, processors = decoding
        if mode == "generate":
            return self._generate_with_transformers(batch, ids, mask, kwargs, until, max_gen_toks, seeds[0])
        cache = self._prefill(ids, mask, p)
        copies = torch.tensor([len(u.slots) for u in batch.units], device=self.device)
        if len(seeds) > len(batch.units):
            rows = torch.repeat_interleave(torch.arange(len(batch.units), device=self.device), copies)
            ids, mask = ids[rows], mask[rows]
            if cache.get_seq_length() > 0:  # prompts of one token have nothing to prefill
                cache.batch_select_indices(rows)
        choose = _argmax if mode == "argmax" else _sampler(processors, seeds)
        answers = self._decode(ids, mask, cache, until, max_gen_toks, choose)
        return [self._finish_text(toks, until) for toks in answers]

    def _generate_with_transformers(
        self, batch: Batch, ids, mask, kwargs: dict, until: list[str], max_gen_toks: int, seed: int | None
    ) -> list[str]:
        """Through `generate`: a greedy batch as lm-eval runs it (its shared prefix read once), or
        one sample alone (its batch is one sequence) with torch's generators seeded by its seed."""
        if batch.prefix:
            cache = self._prefill(ids, mask, batch.prefix)
            kwargs["past_key_values"] = cache
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            out = self._model_generate(
                context=ids, attention_mask=mask, stop=until, max_length=ids.shape[1] + max_gen_toks, **kwargs
            )
        return [self._finish_text(toks[ids.shape[1] :], until) for toks in out.tolist()]

    def _decode(self, ids, mask, cache: DynamicCache, until: list[str], max_gen_toks: int, choose) -> list:
        """Tokens from prefilled prompts, `choose(last logits, alive rows)` picking each step's, each
        row leaving the batch once it is finished.

        transformers 5.17.0's `generate` keeps every row until the last one stops, and most trust
        answers are a word while one row may run to the token limit; here a finished row (an
        end-of-sequence token, a stop sequence in its text, or the limit) leaves the batch and its
        cache. Its tokens are what `generate` would have produced up to then, and lm-eval cuts the
        answer at the first stop sequence, so greedy texts are the same (tested against stock `hf`);
        through `generate` alone, batches would only be slower.
        """
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        answers: list[list[int]] = [[] for _ in range(ids.shape[0])]
        alive = list(range(ids.shape[0]))
        step = ids[:, -1:]
        position = mask.sum(-1, keepdim=True) - 1
        with torch.autocast(
            device_type=self.device.type,
            dtype=self.mixed_precision_dtype,
            enabled=self.mixed_precision_dtype is not None,
        ):
            for _ in range(max_gen_toks):
                logits = self.model(
                    input_ids=step,
                    attention_mask=mask,
                    position_ids=position,
                    past_key_values=cache,
                    use_cache=True,
                ).logits
                tokens = choose(logits[:, -1], alive)
                keep = []
                for i, (row, token) in enumerate(zip(alive, tokens.tolist(), strict=True)):
                    answers[row].append(token)
                    text = self.tokenizer.decode(answers[row], skip_special_tokens=False)
                    if token not in eos and not any(stop in text for stop in until):
                        keep.append(i)
                if not keep:
                    break
                if len(keep) < len(alive):
                    index = torch.tensor(keep, device=self.device)
                    cache.batch_select_indices(index)
                    tokens, mask, position = tokens[index], mask[index], position[index]
                    alive = [alive[i] for i in keep]
                step = tokens[:, None]
                mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
                position = position + 1
        return answers

    def _prefill(self, ids: torch.Tensor, mask: torch.Tensor, prefix: int) -> DynamicCache:
        """Key/value cache of every prompt but its last token: the shared prefix once, then the rest.

        The rest is read in passes of `PREFILL_ROWS` rows (the batch is sorted longest first), each
        padded only to its own longest prompt; each pass's cache is then padded with masked
        positions to the batch's width. Measured on few-shot batches of 64 prompts, padding to the
        batch's longest made up 10-30% of the tokens read.
        """
        base = self._prefix_cache(ids[0, :prefix]) if prefix else []
        head = mask[:, :-1]
        width = head.shape[1]
        if width <= prefix:
            return self._cache_of(base, ids.shape[0])
        positions = (head.cumsum(-1) - 1).masked_fill(head == 0, 0)
        lengths = head[:, prefix:].sum(-1)
        passes = []
        for start in range(0, ids.shape[0], PREFILL_ROWS):
            rows = slice(start, start + PREFILL_ROWS)
            cols = slice(width - max(int(lengths[rows].max()), 1), width)
            cache = self._cache_of(base, ids[rows].shape[0])
            self.model.get_decoder()(
                input_ids=ids[rows, cols],
                attention_mask=torch.cat([head[rows, :prefix], head[rows, cols]], dim=1),
                position_ids=positions[rows, cols],
                past_key_values=cache,
                use_cache=True,
            )
            passes.append(
                [
                    (_widen(layer.keys, prefix, cols.start), _widen(layer.values, prefix, cols.start))
                    for layer in cache.layers
                ]
            )
        return self._cache_of(
            [
                tuple(torch.cat(parts) for parts in zip(*layer, strict=True))
                for layer in zip(*passes, strict=True)
            ]
        )

    def _cache_of(self, layers: list[tuple[torch.Tensor, torch.Tensor]], rows: int = 1) -> DynamicCache:
        """A `DynamicCache` holding the given per-layer keys and values, repeated `rows` times."""
        cache = DynamicCache(config=self.model.config)
        for index, (keys, values) in enumerate(layers):
            if rows > 1:
                keys, values = keys.repeat(rows, 1, 1, 1), values.repeat(rows, 1, 1, 1)
            cache.update(keys, values, index)
        return cache

    def _prefix_cache(self, prefix_ids: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Batch-1 keys and values, per layer, of a shared prefix, continued from the longest prefix
        an earlier batch computed (a scenario's demonstrations are read once, however many batches
        it fills)."""
        tokens = tuple(prefix_ids.tolist())
        reused, kept = self._prefixes.longest(tokens)
        cache = self._cache_of([(k[..., :reused, :], v[..., :reused, :]) for k, v in kept])
        if reused < len(tokens):
            self.model.get_decoder()(
                input_ids=prefix_ids[None, reused:], past_key_values=cache, use_cache=True
            )
        layers = [(layer.keys, layer.values) for layer in cache.layers]
        self._prefixes.put(tokens, layers)
        return layers

    def _finish_text(self, cont_toks: list[int], until: list[str]) -> str:
        """Generated tokens to the answer text, as lm-eval's HF model does (thinking tokens, stops).

        A copy of the post-processing inline in lm-eval 0.4.13's `HFLM.generate_until`: if lm-eval
        changes it, answers drift from stock `hf`'s.
        """
        think = self.think_end_token
        if isinstance(think, int) and think in cont_toks:
            cont_toks = cont_toks[len(cont_toks) - cont_toks[::-1].index(think) :]
        text = self.tok_decode(cont_toks)
        if isinstance(think, int):
            text = text.lstrip()
        return postprocess_generated_text(
            generation=text, stop=until, think_end_token=think if isinstance(think, str) else None
        )
