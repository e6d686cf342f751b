"""The rules `trust-hf` and `trust-vllm` add to lm-eval's `generate_until`, written once.

Generation itself is the engine's own lm-eval model (`HFLM` or `VLLM`): its batching, stop
sequences and post-processing. Around it, `TrustGeneration` adds what lm-eval lacks:
- every prompt is checked to fit with its new tokens before anything is generated, where lm-eval's
  models would cut the prompt's start without a word (`PromptTooLongError`, naming the document);
- lm-eval passes a request K times for K samples (`repeats`): a greedy one is generated once and
  its answer goes to lm-eval's response cache; the k-th copy of a sampled one is sample k, drawn with
  a seed of its own from (run seed, prompt, settings, k) (`response_cache.sample_seed`), so it depends
  neither on the batch nor on an interruption, and goes to the sample store that a rerun reads back;
- sampling that cannot sample (temperature 0) is refused.
The engine's `_model_generate` draws each row with the seed `_take_seeds` gives for its tokens.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import defaultdict, deque

from lm_eval.api.model import CacheHook
from lm_eval.models.utils import normalize_gen_kwargs
from tqdm import tqdm

from lm_eval_trust.dimension import TaskConfigError
from lm_eval_trust.model_adapters.response_cache import SampleStore, sample_seed


class PromptTooLongError(TaskConfigError):
    """A prompt and its new tokens do not fit the context: lm-eval's models would cut it."""


def check_batch_size(value) -> None:
    """lm-eval 0.4.13's models fail on a bad batch size only after the model is loaded (and
    compressed): `int("abc")` after loading, 0 or -1 at the first batch, `auto:0` as a division by
    zero in its re-sizing schedule. Checked first."""
    if re.fullmatch(r"[1-9][0-9]*|auto(:[1-9][0-9]*)?", str(value).strip()) and not isinstance(value, bool):
        return
    raise ValueError(
        f"--batch_size {value!r} is not a batch size; give a positive integer (e.g. --batch_size 8), "
        "'auto' (sized by the model) or 'auto:N' with N a positive integer (re-sized N times)"
    )


class TrustGeneration:
    """Mixin placed before lm-eval's `HFLM` or `VLLM`: the rules above around its `generate_until`."""

    sampling_seed: int  # the run's `--seed`, read before the model loads
    # Sampled prompts one engine call draws (None: all): a kill loses at most one call's samples.
    prompts_per_call: int | None = None
    _row_seeds: dict | None = None
    engine_name: str  # lm-eval's name of the model type extended
    context_arg: str  # its --model_args setting of the context length

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        store = SampleStore(self.cache_hook, self.sampling_seed)
        results: list[str | None] = [None] * len(requests)
        greedy: dict[tuple, list[int]] = {}
        sampled: dict[tuple, list[int]] = {}
        for i, req in enumerate(requests):
            context, gen_kwargs = req.args
            key = (json.dumps(gen_kwargs, sort_keys=True, default=str), context)
            if key not in greedy and key not in sampled:
                self._check_settings(gen_kwargs)
            if normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)["do_sample"]:
                results[i] = store.get(context, gen_kwargs, len(sampled.setdefault(key, [])))
                sampled[key].append(i)
            else:
                greedy.setdefault(key, []).append(i)
        todo = [[(k, i) for k, i in enumerate(where) if results[i] is None] for where in sampled.values()]
        todo = [slots for slots in todo if slots]
        tokens = {}
        for i in [where[0] for where in greedy.values()] + [slots[0][1] for slots in todo]:
            tokens[requests[i].args[0]] = self._check_fits(requests[i])
        pbar = tqdm(
            total=len(requests), disable=disable_tqdm or self.rank != 0, desc="Running generate_until"
        )
        pbar.update(len(requests) - sum(len(w) for w in greedy.values()) - sum(len(s) for s in todo))
        step = self.prompts_per_call or len(todo) or 1
        calls = [
            (b, [])
            for b in self._greedy_batches([(key, requests[w[0]]) for key, w in greedy.items()], tokens)
        ]
        calls += [
            ([], [slot for prompt in todo[s : s + step] for slot in prompt])
            for s in range(0, len(todo), step)
        ]
        if self.prompts_per_call is None and self._batch_rows() is None and len(calls) == 2:
            # The engine takes every prompt at once: greedy and sampled rows in one call, so that
            # neither waits for the other's last rows.
            calls = [(calls[0][0], calls[1][1])]
        for batch, slots in calls:
            rows = [req for _, req in batch] + [requests[i] for _, i in slots]
            seeds = [None] * len(batch) + [
                sample_seed(self.sampling_seed, *requests[i].args, k) for k, i in slots
            ]
            texts = self._engine_generate(rows, tokens, seeds if slots else None)
            for (key, req), text in zip(batch, texts[: len(batch)], strict=True):
                for i in greedy[key]:
                    results[i] = text
                self.cache_hook.add_partial("generate_until", req.args, text)
                pbar.update(len(greedy[key]))
            for (k, i), text in zip(slots, texts[len(batch) :], strict=True):
                results[i] = text
                store.put(*requests[i].args, k, text)
            store.commit()
            pbar.update(len(slots))
        pbar.close()
        return results

    def _greedy_batches(self, prompts: list[tuple], tokens: dict) -> list[list[tuple]]:
        """lm-eval's batches of distinct greedy prompts (one settings each, longest prompt first),
        each answered and cached before the next runs, so a kill loses one batch at most; where the
        engine takes them all at once (vLLM, `auto`), one call."""
        size = self._batch_rows()
        if size is None:
            return [prompts]
        prompts = sorted(prompts, key=lambda p: (p[0][0], -len(tokens[p[0][1]]), p[0][1]))
        groups = [list(g) for _, g in itertools.groupby(prompts, key=lambda p: p[0][0])]
        return [group[s : s + size] for group in groups for s in range(0, len(group), size)]

    def _batch_rows(self) -> int | None:
        """Rows an engine call takes (None: all of them)."""
        return None if self.batch_size == "auto" else int(self.batch_size)

    def _check_settings(self, gen_kwargs: dict) -> None:
        """Refuse settings the rules cannot keep; before any generation."""
        kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
        temperature = float(kwargs.get("temperature", 0.0))
        if kwargs["do_sample"] and not temperature > 0:
            raise ValueError(
                f"Generation settings {gen_kwargs} sample (do_sample=true) at temperature={temperature:g}, "
                "which cannot sample; give a temperature above 0 (e.g. --gen_kwargs temperature=1.0), "
                "or do_sample=false for one greedy answer per prompt"
            )

    def _check_fits(self, req) -> list[int]:
        """The prompt's tokens, as the engine encodes them, if they fit with the new tokens."""
        context, gen_kwargs = req.args
        toks = self.tok_encode(context)
        new = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)["max_gen_toks"]
        room = self.max_length - (0 if getattr(self, "backend", "causal") == "seq2seq" else new)
        if len(toks) <= room:
            return toks
        scenario = req.doc.get("scenario") if isinstance(req.doc, dict) else None
        raise PromptTooLongError(
            f"{req.task_name} document {req.doc_id}"
            + (f" (scenario {scenario})" if scenario else "")
            + f": the prompt is {len(toks)} tokens and up to {new} new tokens follow, more than "
            f"{self.context_arg}={self.max_length}; lm-eval's {self.engine_name} model would cut the "
            f"prompt's start. Give {self.context_arg}={len(toks) + new} or more in --model_args (if "
            "the model's positions reach that far), or leave this scenario out"
        )

    def _engine_generate(self, requests, tokens: dict, seeds: list[int] | None = None) -> list[str]:
        """The engine's own `generate_until` on these requests, with lm-eval's cache writes left to
        `generate_until` above; with `seeds`, request i drawn with seeds[i]."""
        hook, self.cache_hook = self.cache_hook, CacheHook(None)
        if seeds is not None:
            self._row_seeds = defaultdict(deque)
            for req, seed in zip(requests, seeds, strict=True):
                self._row_seeds[tuple(tokens[req.args[0]])].append(seed)
        try:
            return super().generate_until(requests, disable_tqdm=True)
        finally:
            self.cache_hook, self._row_seeds = hook, None

    def _take_seeds(self, rows: list[tuple[int, ...]]) -> list[int] | None:
        """Each row's seed, by its prompt tokens, for a call drawing samples (None for greedy work).

        lm-eval's models order a call's rows by length then text with a stable sort, so the copies
        of one prompt reach the engine in the order `generate_until` listed them: sample 0 first.
        """
        if self._row_seeds is None:
            return None
        return [self._row_seeds[row].popleft() for row in rows]
