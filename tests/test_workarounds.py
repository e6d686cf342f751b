"""Every use of another library's private name is listed in `lm_eval_trust/workarounds.py`, so a
version bump has one list to re-check."""

from __future__ import annotations

import re
from pathlib import Path

import lm_eval_trust.workarounds as workarounds

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for d in ("lm_eval_trust", "model_adapters", "tasks") for p in (ROOT / d).rglob("*.py")]
# `thing._name` where `thing` is not this object, or `from lib._module import ...`.
ACCESS = re.compile(r"(?<![\w.])(?!self\b|cls\b|super\(\))\w+(?:\(\))?(?:\.\w+)*\.(_[A-Za-z]\w*)\b")
IMPORT = re.compile(r"^\s*from\s+[\w.]*\.(_[A-Za-z]\w*)", re.M)


def private_names() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    own = set()
    for path in SOURCES:
        text = path.read_text()
        own |= {m for pair in re.findall(r"^\s*def\s+(_\w+)|^(_\w+)\s*[:=]", text, re.M) for m in pair if m}
        own |= set(re.findall(r"\.(_[A-Za-z]\w*)\s*=(?!=)", text))  # attributes this code sets
        code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
        code = re.sub(r'"""[\s\S]*?"""', "", code)
        for name in ACCESS.findall(code) + IMPORT.findall(code):
            found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return {name: where for name, where in found.items() if name not in own}


def test_every_private_name_of_another_library_is_listed():
    listed = workarounds.__doc__
    missing = {name: sorted(where) for name, where in private_names().items() if name not in listed}
    assert not missing, f"private names used but not listed in workarounds.py: {missing}"


def test_the_scan_finds_the_private_names_it_must():
    found = private_names()
    assert {"_cli", "_forward_pre_hooks"} <= set(found)
