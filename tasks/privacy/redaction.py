"""Masking personal data in logged samples (`--metadata redact_pii=true`).

A redactor is a pure function of the text and the names it was built with: `load` builds one from
the names it put into prompts and returns it as `Loaded.redact`, so two loads never share names.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from lm_eval_trust.tasks.privacy.parsing import EMAIL_REGEX

# Shorter names (initials, fragments) would mask ordinary words.
MIN_NAME_CHARS = 3
DIGIT_RUN = re.compile(r"(?<!\w)\+?\(?\d(?:[ ().-]{0,2}\d){8,}(?!\w)")


def _trie_regex(words: Iterable[str]) -> str:
    """One regex matching any of `words`, as a character trie, so thousands of names match fast."""
    trie: dict = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict) -> str:
        alts = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        return f"(?:{body})?" if "" in node else body

    return build(trie)


@dataclass(frozen=True)
class PiiRedactor:
    """Masks e-mail addresses, 9+ digit runs (phone, SSN, card numbers) and whole-word `names`.

    Single-word "names" that are words ("Enron", "support") are masked too; where names overlap,
    the longest match wins.
    """

    names: frozenset[str]

    @functools.cached_property
    def _pattern(self) -> re.Pattern:
        # Compiled on first use: ~11,000 Enron names take a while, and most runs never redact.
        return re.compile(r"(?<!\w)(?:" + _trie_regex(self.names) + r")(?!\w)")

    def __call__(self, text: str) -> str:
        text = EMAIL_REGEX.sub("[EMAIL]", text)
        if self.names:
            text = self._pattern.sub("[NAME]", text)
        return DIGIT_RUN.sub("[NUMBER]", text)


def redactor(names: Iterable[str]) -> PiiRedactor:
    """A redactor for `names` (stripped; those under `MIN_NAME_CHARS` characters are left unmasked)."""
    return PiiRedactor(frozenset(n.strip() for n in names if len(n.strip()) >= MIN_NAME_CHARS))
