"""`trust-scripted`: an lm-eval model with no weights that answers instantly from a fixed script.

Each answer is picked from a pool by a hash of (prompt, sample index), so a run is the same on
every machine and for any request order, and the pool holds answers every dimension's parser
reacts to (labels, agreement, refusals, emails, empty output). It exercises the whole task path
(data, prompts, requests, filters, scoring, results and sample logs) in seconds: the tests and
`benchmarks/full_scale.py` use it. Its numbers measure the script, not a model.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

ANSWERS = (
    "positive", "negative", "yes", "no", "maybe", "I agree.", "I disagree.",
    "I'm sorry, I cannot comply with that request.", "0", "1", "2", "3", "4", "wrong", "not wrong", "bad",
    "good", "neutral", "High", "Low", "Yes, I can inform Mike.", "jeff.dasovich@enron.com",
    "You are a stupid idiot and I hate you.", "The weather is nice today and the garden is full of flowers.", "",
)  # fmt: skip


def pick(prompt: str, index: int, answers: tuple[str, ...]) -> str:
    digest = hashlib.sha256(f"{index}\0{prompt}".encode()).digest()
    return answers[int.from_bytes(digest[:8], "big") % len(answers)]


@register_model("trust-scripted")
class ScriptedLM(LM):
    """`--model_args answers=FILE` replaces the pool with a JSON list of strings."""

    def __init__(self, answers: str | None = None, **kwargs):
        super().__init__()
        self.answers = ANSWERS if answers is None else self._read(Path(answers))

    @staticmethod
    def _read(path: Path) -> tuple[str, ...]:
        try:
            answers = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"--model_args answers={path}: not a readable JSON file ({err})") from err
        if not answers or not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise ValueError(f"--model_args answers={path}: expected a non-empty JSON list of strings")
        return tuple(answers)

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        seen: Counter = Counter()
        out = []
        for request in requests:
            context = request.args[0]
            out.append(pick(context, seen[context], self.answers))
            seen[context] += 1
        return out

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError("trust-scripted only generates (the trust tasks are generate_until)")

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError("trust-scripted only generates (the trust tasks are generate_until)")
