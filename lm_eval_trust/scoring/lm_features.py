"""Text features from the embedded SmolLM2's hidden states, for the `offline-lm` toxicity scorer.

A text's feature vector is the mean over its tokens of the hidden state after the first `LAYERS`
decoder layers (final norm applied). Layer 8 was as useful as deeper layers for toxicity, and
running 8 of the 30 layers costs a fraction of the whole model, so only those 8 are loaded.

The features of a text depend on that text alone, never on what it is scored beside: each text is
right-padded to a fixed bucket length (causal attention never looks at later padding) and every
forward pass has exactly `BATCH` rows, so the kernels see the same shapes whichever texts share the
pass, and a matrix product gives a row the same bits when the shapes are equal. Texts longer than
the last bucket are featurized on their first `BUCKETS[-1]` tokens (the n-gram half of the scorer
reads the whole text). Runs on the GPU when torch sees one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

log = logging.getLogger(__name__)

MODEL_ALIAS = "smollm2-135m-instruct"
LAYERS = 8
BUCKETS = (16, 32, 64, 128, 256, 512)
BATCH = 16


def valid_unicode(text: str) -> str:
    """The text with each lone surrogate as U+FFFD, as a decode gives it: the tokenizer and pandas'
    string columns take valid Unicode only."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _bucket(n: int) -> int:
    return next((b for b in BUCKETS if n <= b), BUCKETS[-1])


class HiddenStateFeatures:
    """Mean-pooled layer-`LAYERS` states of the embedded model, batch-invariant by construction."""

    def __init__(self):
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from lm_eval_trust.model_adapters import embedded

        self.checkpoint = embedded.resolve(MODEL_ALIAS)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(self.checkpoint)
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the unused layers 9-30 and head are left out on purpose
        try:
            model = AutoModel.from_pretrained(self.checkpoint, num_hidden_layers=LAYERS, dtype=torch.float32)
        finally:
            hf_logging.set_verbosity(verbosity)
        self.model = model.to(self.device).eval()
        self.dim = model.config.hidden_size

    def __call__(self, texts: Sequence[str]):
        """A float32 array of shape (len(texts), hidden size)."""
        import numpy as np
        import torch

        ids = self.tokenizer([valid_unicode(t) for t in texts], add_special_tokens=False)["input_ids"]
        ids = [row[: BUCKETS[-1]] or [self.tokenizer.pad_token_id] for row in ids]
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        by_bucket: dict[int, list[int]] = {}
        for i, row in enumerate(ids):
            by_bucket.setdefault(_bucket(len(row)), []).append(i)
        with torch.inference_mode():
            for length, members in sorted(by_bucket.items()):
                for start in range(0, len(members), BATCH):
                    chunk = members[start : start + BATCH]
                    tokens = torch.full((BATCH, length), self.tokenizer.pad_token_id, dtype=torch.long)
                    mask = torch.zeros((BATCH, length), dtype=torch.long)
                    mask[:, 0] = 1  # filler rows hold one token, so no row is all padding
                    for r, i in enumerate(chunk):
                        tokens[r, : len(ids[i])] = torch.tensor(ids[i])
                        mask[r, : len(ids[i])] = 1
                    states = self.model(
                        input_ids=tokens.to(self.device), attention_mask=mask.to(self.device)
                    ).last_hidden_state
                    weights = mask.to(self.device, states.dtype).unsqueeze(-1)
                    pooled = (states * weights).sum(dim=1) / weights.sum(dim=1)
                    out[chunk] = pooled[: len(chunk)].float().cpu().numpy()
        return out
