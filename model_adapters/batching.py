"""How `trust-hf` forms generation batches: prompts whose work can be shared, and the CPU batch size.

lm-eval hands the same request K times for K samples, and many trust prompts start with the same
long text (a system prompt, fixed demonstrations). A `Unit` is one distinct prompt with the
sequences still to generate from it; `plan_batches` packs units into batches of at most
`batch_size` sequences and says how many leading tokens every prompt of a batch shares, so the
model reads that prefix once and each distinct prompt once, whatever the number of samples.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# Below this many shared tokens a batch is cheaper as a plain left-padded batch (measured with
# SmolLM2-135M on CPU: a 770-token prefix shared by 8 prompts halved the batch's time).
MIN_SHARED_PREFIX = 64


def check_batch_size(value) -> None:
    """lm-eval 0.4.13's HF model fails on a bad batch size only after the model is loaded (and
    compressed): `int("abc")` after loading, 0 or -1 at the first batch, `auto:0` as a division by
    zero in its re-sizing schedule. `TrustHFLM` checks it first."""
    if re.fullmatch(r"[1-9][0-9]*|auto(:[1-9][0-9]*)?", str(value).strip()) and not isinstance(value, bool):
        return
    raise ValueError(
        f"--batch_size {value!r} is not a batch size; give a positive integer (e.g. --batch_size 8), "
        "'auto' (sized from free memory) or 'auto:N' with N a positive integer (re-sized N times)"
    )


@dataclass(frozen=True)
class Unit:
    """One distinct prompt and one slot per sequence to generate from it (the caller's handles)."""

    tokens: tuple[int, ...]
    slots: tuple


@dataclass(frozen=True)
class Batch:
    units: tuple[Unit, ...]
    prefix: int  # leading tokens common to every prompt, computed once (0: none shared)

    @property
    def sequences(self) -> int:
        return sum(len(u.slots) for u in self.units)

    @property
    def shared(self) -> bool:
        """Whether the batch goes through the prefill-once path (a shared prefix or several samples)."""
        return self.prefix > 0 or any(len(u.slots) > 1 for u in self.units)


def common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest common leading run of the sequences."""
    if not seqs:
        return 0
    first, n = seqs[0], min(len(s) for s in seqs)
    for i in range(n):
        if any(s[i] != first[i] for s in seqs):
            return i
    return n


def split_units(units: Sequence[Unit], batch_size: int) -> list[Unit]:
    """Units with more sequences than a batch holds, cut into pieces of at most `batch_size`."""
    return [
        Unit(u.tokens, u.slots[i : i + batch_size]) for u in units for i in range(0, len(u.slots), batch_size)
    ]


def _pack(units: list[Unit], batch_size: int, min_shared: int, solo_over: int | None = None) -> list[Batch]:
    """Longest prompts first (lm-eval's order: time estimates err long, memory errors come early).

    Prompts with more than `solo_over` tokens past the prefix all `units` share get a batch of
    their own. A prompt whose samples overflow a batch fills it and starts the next one: decoding
    costs nearly as much per step for a part-filled batch (25 samples a prompt would otherwise
    leave 64-row batches at 50), and the prompt is only read again once."""
    units = sorted(units, key=lambda u: (-len(u.tokens), u.tokens))
    shared = common_prefix([u.tokens for u in units]) if len(units) > 1 else 0
    batches, current = [], []
    for unit in units:
        alone = solo_over is not None and len(unit.tokens) - shared > solo_over
        free = batch_size - sum(len(u.slots) for u in current)
        if current and (alone or len(unit.slots) > free):
            if not alone and free:
                current.append(Unit(unit.tokens, unit.slots[:free]))
                unit = Unit(unit.tokens, unit.slots[free:])
            batches.append(current)
            current = []
        current.append(unit)
    if current:
        batches.append(current)
    out = []
    for members in batches:
        # At least one token per prompt stays outside the shared prefix: it yields the first logits.
        prefix = min(common_prefix([u.tokens for u in members]), min(len(u.tokens) for u in members) - 1)
        out.append(Batch(tuple(members), prefix if len(members) > 1 and prefix >= min_shared else 0))
    return out


def plan_batches(
    units: Sequence[Unit], batch_size: int, min_shared: int = MIN_SHARED_PREFIX, solo_over: int | None = None
) -> list[Batch]:
    """Batches of at most `batch_size` sequences, prompts sharing >= `min_shared` tokens kept together.

    Prompts are clustered by walking them in token order and cutting where neighbours share fewer
    than `min_shared` tokens; every pair within a cluster then shares at least that many. Clusters
    of one prompt are pooled and batched by length like lm-eval does. A prompt with more than
    `solo_over` tokens beyond what its group shares is generated alone: padded attention over a long
    stretch takes a masked attention kernel that is slower on CPU than one prompt at a time.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    pieces = sorted(split_units(units, batch_size), key=lambda u: u.tokens)
    clusters: list[list[Unit]] = []
    for unit in pieces:
        last = clusters[-1][-1].tokens if clusters else ()
        # Pieces of one prompt never share a batch (each fills one), so they do not form a cluster.
        if last and last != unit.tokens and common_prefix([last, unit.tokens]) >= min_shared:
            clusters[-1].append(unit)
        else:
            clusters.append([unit])
    pool = [c[0] for c in clusters if len(c) == 1]
    groups = [[batch] for batch in _pack(pool, batch_size, min_shared, solo_over)]
    groups += [_pack(c, batch_size, min_shared, solo_over) for c in clusters if len(c) > 1]
    # Longest first, a cluster's batches kept together so the next one reuses its prefix's cache.
    groups.sort(key=lambda g: -max(len(u.tokens) for b in g for u in b.units))
    return [batch for group in groups for batch in group]


def cpu_batch_size(
    config, seq_len: int, logit_rows: int, available_bytes: int, max_batch_size: int, elem_bytes: int = 4
) -> int:
    """The largest batch whose key/value cache, activations and logits fit in half the free memory.

    lm-eval's `auto` probes by running a batch of `max_batch_size` x the model's maximum length and
    halving on an out-of-memory error; on a CPU that means minutes of compute at 8k tokens and, with
    memory overcommit, the kernel's OOM killer instead of an error. So on CPU the size is computed.
    `logit_rows` is how many positions per sequence produce vocabulary logits (1 when generating).
    """
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    per_token = (
        2 * config.num_hidden_layers * kv_heads * head_dim  # the key/value cache
        + 4 * config.hidden_size
        + 3 * getattr(config, "intermediate_size", 4 * config.hidden_size)  # live activations
    )
    per_sequence = elem_bytes * (seq_len * per_token + logit_rows * config.vocab_size)
    return max(1, min(max_batch_size, available_bytes // 2 // per_sequence))
