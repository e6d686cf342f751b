"""`trust-hf`'s generation: work shared across samples and common prefixes, greedy rows that leave
the batch when they finish, answers equal to lm-eval's `hf`.

`SharedGeneration` is a mixin for lm-eval's `HFLM`: it overrides `generate_until` and uses the
host's tokenizer, model and settings, plus two things `TrustHFLM` provides: `_prefixes` (a
`PrefixCache`) and `_cpu_batch_size(seq_len, logit_rows)`.
"""

from __future__ import annotations

import json

import torch
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
from tqdm import tqdm
from transformers import DynamicCache, GenerationConfig

from lm_eval_trust.model_adapters.batching import Batch, Unit, plan_batches
from lm_eval_trust.model_adapters.sample_store import SampleStore

# On CPU, a prompt longer than this (with no prefix to share) is generated alone: measured with
# SmolLM2 on 2 cores, 4 fairness prompts of 4,140 tokens took 69 s batched and 42 s one by one,
# while prompts of 700-900 tokens were 2.4x faster batched.
CPU_SOLO_PROMPT_TOKENS = 1024
# Rows per prefill pass over the prompts' unshared parts (see `SharedGeneration._prefill`).
PREFILL_ROWS = 16
# Generation-config fields that make transformers 5.17.0's `generate` change the logits before a
# greedy choice (`GenerationMixin._get_logits_processor`); with any of them set, greedy batches go
# through `generate` instead of the argmax loop.
LOGITS_PROCESSING = (
    "num_beams",
    "penalty_alpha",
    "repetition_penalty",
    "encoder_repetition_penalty",
    "no_repeat_ngram_size",
    "encoder_no_repeat_ngram_size",
    "bad_words_ids",
    "sequence_bias",
    "suppress_tokens",
    "begin_suppress_tokens",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "min_length",
    "min_new_tokens",
    "exponential_decay_length_penalty",
    "guidance_scale",
    "watermarking_config",
    "renormalize_logits",
)


def _widen(states: torch.Tensor, prefix: int, start: int) -> torch.Tensor:
    """Cached states of a prefill pass that began at column `start`, with masked zeros between the
    shared prefix and that column, so every pass has the batch's width."""
    gap = states.new_zeros(*states.shape[:2], start - prefix, states.shape[3])
    return torch.cat([states[..., :prefix, :], gap, states[..., prefix:, :]], dim=2)


class SharedGeneration:
    """lm-eval's `generate_until`, sharing work across samples and prefixes (see the module)."""

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """lm-eval's generation with the work shared across samples and common prefixes.

        lm-eval passes the same request K times for K samples (`repeats`). Here the K copies form
        one unit: a greedy prompt is generated once and its answer copied; a sampled prompt is read
        once (its key/value cache computed at batch 1, then repeated for its K rows) and sampled K
        times in the same `generate` call. Batches count sequences, so K larger than the batch size
        is split across calls. Prompts sharing a long prefix (fixed demonstrations, a system
        prompt) are batched together and the prefix is computed once (`batching.plan_batches`).
        Otherwise it is lm-eval's batching: grouped by generation settings, longest prompts first.

        Greedy answers equal the unshared path's (positions follow the attention mask, padding
        between prefix and suffix is masked; tested against stock `hf`). Sampling: lm-eval seeds
        torch once per run (`--seed`, default 1234) and both paths draw every token of every row
        from the same distribution with that one generator, so samples are statistically equivalent;
        which sample a given draw lands in depends on batch composition, as it already does in
        stock lm-eval when the batch size changes. With `--use_cache`, each sample is stored as it
        is produced under its sample index; a rerun reads those and draws only the missing ones.
        """
        if self.backend != "causal":
            return super().generate_until(requests, disable_tqdm)
        store = SampleStore(self.cache_hook)
        results: list[str | None] = [None] * len(requests)
        positions: dict[tuple[str, str], list[int]] = {}
        for i, req in enumerate(requests):
            context, gen_kwargs = req.args
            positions.setdefault((json.dumps(gen_kwargs, sort_keys=True, default=str), context), []).append(i)
        by_settings: dict[str, list[tuple[str, list[int]]]] = {}
        for (settings, context), where in positions.items():
            by_settings.setdefault(settings, []).append((context, where))
        pbar = tqdm(
            total=len(requests),
            disable=disable_tqdm or self.rank != 0,
            desc="Running generate_until requests",
        )
        for entries in by_settings.values():
            gen_kwargs = requests[entries[0][1][0]].args[1]
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
            self._generate_units(units, gen_kwargs, results, store, pbar)
        pbar.close()
        return results

    def _encode_context(self, context: str, kwargs: dict) -> tuple[int, ...]:
        """The prompt's tokens exactly as lm-eval's HF model would feed them (BOS, left truncation).

        A copy of what lm-eval 0.4.13's `HFLM.generate_until` does inline (no function of its own):
        if lm-eval changes it, prompts and so answers drift from stock `hf`'s.
        """
        max_ctx_len = self.max_length - kwargs.get("max_gen_toks", self.max_gen_toks)
        ids, _ = self.tok_batch_encode([context], left_truncate_len=max_ctx_len, truncation=self.truncation)
        return tuple(ids[0].tolist())

    def _generate_units(
        self, units: list[Unit], gen_kwargs: dict, results: list, store: SampleStore, pbar
    ) -> None:
        if not units:
            return
        kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
        eos = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
        max_gen_toks = kwargs.pop("max_gen_toks")
        batch_size = self.batch_size
        if batch_size == "auto":
            longest = max(len(u.tokens) for u in units) + max_gen_toks
            batch_size = (
                self._cpu_batch_size(longest, 1) if self.device.type == "cpu" else self._detect_batch_size()
            )
        solo_over = CPU_SOLO_PROMPT_TOKENS if self.device.type == "cpu" else None
        for batch in plan_batches(units, int(batch_size), solo_over=solo_over):
            rows = self._generate_batch(batch, dict(kwargs), until, max_gen_toks)
            slots = [slot for unit in batch.units for slot in unit.slots]
            for (context, where, index), text in zip(slots, rows, strict=True):
                if index is not None:
                    store.put(context, gen_kwargs, index, text)
                for pos in where:
                    results[pos] = text
                self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
                pbar.update(len(where))
            store.commit()

    @torch.no_grad()
    def _generate_batch(self, batch: Batch, kwargs: dict, until: list[str], max_gen_toks: int) -> list[str]:
        """One `generate` call for the batch; one decoded text per sequence, in slot order."""
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
        if self._argmax_decodes(kwargs):
            cache = self._prefill(ids, mask, p)
            answers = self._greedy_generate(ids, mask, cache, until, max_gen_toks)
            return [self._finish_text(toks, until) for toks in answers]
        if batch.shared:
            copies = torch.tensor([len(u.slots) for u in batch.units], device=self.device)
            cache = self._prefill(ids, mask, p)
            rows = torch.repeat_interleave(torch.arange(len(batch.units), device=self.device), copies)
            ids, mask = ids[rows], mask[rows]
            if cache.get_seq_length() > 0:  # prompts of one token have nothing to prefill
                cache.batch_select_indices(rows)
                kwargs["past_key_values"] = cache
        out = self._model_generate(
            context=ids, attention_mask=mask, stop=until, max_length=ids.shape[1] + max_gen_toks, **kwargs
        )
        return [self._finish_text(toks[ids.shape[1] :], until) for toks in out.tolist()]

    def _argmax_decodes(self, kwargs: dict) -> bool:
        """Whether `generate` would decode this request by the plain argmax of the logits: greedy,
        and no logits processor in the request or the model's generation config.

        `LOGITS_PROCESSING` follows the fields transformers 5.17.0's `_get_logits_processor` reads;
        a processor missing from it would be skipped by the argmax loop and change answers.
        """
        if kwargs.get("do_sample") or set(kwargs) - {"do_sample", "temperature", "top_p", "top_k"}:
            return False
        config, default = self.model.generation_config, GenerationConfig()
        return all(getattr(config, name, None) == getattr(default, name, None) for name in LOGITS_PROCESSING)

    @torch.no_grad()
    def _greedy_generate(
        self, ids: torch.Tensor, mask: torch.Tensor, cache: DynamicCache, until: list[str], max_gen_toks: int
    ) -> list[list[int]]:
        """Greedy answers from prefilled prompts, each row leaving the batch once it is finished.

        transformers 5.17.0's `generate` keeps every row until the last one stops, and most trust
        answers are a word while one row may run to the token limit; here a finished row (an
        end-of-sequence token, a stop sequence in its text, or the limit) leaves the batch and its
        cache. Its tokens are what `generate` would have produced up to then, and lm-eval cuts the
        answer at the first stop sequence, so the texts are the same (tested against stock `hf`);
        through `generate` alone, greedy batches would only be slower.
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
                tokens = logits[:, -1].argmax(-1)
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
