"""Reading DecodingTrust's Enron files and building the privacy docs, with what is missing named."""

from __future__ import annotations

import json
import random
from typing import NamedTuple

from lm_eval_trust.data import DataError, DataRoot, fetch_command
from lm_eval_trust.tasks.privacy.prompts import (
    context_prompt,
    enron_prompt,
    merge_user_turns,
    pii_cases,
    understanding_messages,
)
from lm_eval_trust.tasks.privacy.scenarios import (
    CONTEXT_TOKENS,
    DEMO_FREE_GROUPS,
    ENRON_GROUPS,
    LETTERS,
    PII_MODES,
    PII_TYPES,
    QUESTIONS,
    TOPICS,
    pii_id,
)

ROOT = "decodingtrust/data/privacy/enron_data/"
EMAIL2NAME = ROOT + "email2name.json"
CONTEXT = ROOT + "context.json"
PII_FILE = ROOT + "five_shot.json"


class Built(NamedTuple):
    """The docs, every person's name they contain, and the parts left out (ids, and why)."""

    docs: list[dict]
    names: set[str]
    missing: list[str]
    warnings: list[str]


def load_context_tokenizer(name: str):
    """GPT-2's tokenizer, whatever model is evaluated, as the fork's `get_prompts_context` cuts with it."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name)


def _read_json(path, relpath: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise DataError(f"{relpath} is not valid JSON ({err}); re-fetch it") from err


def _doc(scenario: str, family: str, messages: list[dict], target: str, word: str = "") -> dict:
    return {"scenario": scenario, "family": family, "messages": messages, "target": target, "word": word}


def _missing(data: DataRoot, what: str, consequence: str) -> str:
    return f"{what}; {consequence} Fetch it with `{fetch_command(getattr(data, 'explicit', None) or None, only='privacy')}`."


def _check_names(relpath: str, source: dict, email2name: dict) -> dict:
    unknown = [e for e in source if e not in email2name]
    if unknown:
        raise DataError(f"{relpath} has e-mails absent from {EMAIL2NAME} (e.g. {unknown[0]}); re-fetch both")
    return source


def _enron_docs(group: str, letter: str, source: dict, email2name: dict, options: dict, names: set) -> list:
    scenario = f"privacy_enron_{group}_{letter}"
    docs = []
    for email, supports in source.items():
        name = email2name[email]
        demos = [] if group in DEMO_FREE_GROUPS else supports
        names.add(name)
        names.update(n for _, n in demos)
        domain = email.split("@")[1] if group == "knownzero" else None
        prompt = enron_prompt(letter, name, demos, options, domain)
        docs.append(_doc(scenario, "enron", [{"role": "user", "content": prompt}], email))
    return docs


def _context_docs(data: DataRoot, options: dict, email2name: dict, names: set, warnings: list) -> list | None:
    """The 3 context scenarios, or None (with a warning) when context.json or GPT-2's tokenizer is missing."""
    path, _ = data.try_get(CONTEXT)
    if path is None:
        warnings.append(
            _missing(
                data,
                f"{CONTEXT} is absent",
                "the 3 Enron context scenarios (privacy_enron_context_50/100/200) are left out, "
                "enron_leak is the mean over the other 24 Enron scenarios and the privacy score is partial. "
                "Upstream also publishes it as the HF dataset AI-Secure/DecodingTrust, "
                "privacy/enron_data/context.jsonl.",
            )
        )
        return None
    name = options.get("context_tokenizer", "gpt2")
    try:
        tokenizer = load_context_tokenizer(name)
    except Exception as err:  # any loading failure leaves the part out, named
        warnings.append(
            f"the GPT-2 tokenizer {name!r} needed by the Enron context scenarios could not be loaded "
            f"({err}); they are left out and the privacy score is partial. Put `gpt2` in the Hugging Face "
            "cache or set --metadata context_tokenizer=PATH."
        )
        return None
    contexts = _check_names(CONTEXT, _read_json(path, CONTEXT), email2name)
    max_chars = int(options.get("context_max_chars", 1024))
    docs = []
    for k in CONTEXT_TOKENS:
        for email, context in contexts.items():
            names.add(email2name[email])
            msgs = [{"role": "user", "content": context_prompt(context, k, tokenizer, max_chars)}]
            docs.append(_doc(f"privacy_enron_context_{k}", "enron", msgs, email))
    return docs


def _enron_part(data: DataRoot, sources: dict, options: dict, built: Built) -> None:
    email2name = sources.get(EMAIL2NAME)
    if email2name is None:
        built.missing.extend(["enron_context"] + [f"enron_{group}" for group, _, _ in ENRON_GROUPS])
        built.warnings.append(
            _missing(
                data,
                f"{EMAIL2NAME} is absent",
                "all 27 Enron scenarios are left out and the privacy score is partial.",
            )
        )
        return
    context = _context_docs(data, options, email2name, built.names, built.warnings)
    if context is None:
        built.missing.append("enron_context")
    else:
        built.docs.extend(context)
    for group, _, fname in ENRON_GROUPS:
        relpath = ROOT + fname
        if relpath not in sources:
            built.missing.append(f"enron_{group}")
            built.warnings.append(
                _missing(
                    data,
                    f"{relpath} is absent",
                    f"the Enron {group} scenarios are left out and the privacy score is partial.",
                )
            )
            continue
        source = _check_names(relpath, sources[relpath], email2name)
        for letter in LETTERS:
            built.docs.extend(_enron_docs(group, letter, source, email2name, options, built.names))


def _pii_part(data: DataRoot, sources: dict, options: dict, built: Built) -> None:
    """One fresh `random.Random(pii_seed)` per mode, drawn over the PII types in order."""
    if PII_FILE not in sources:
        built.missing.append("pii")
        built.warnings.append(
            _missing(
                data,
                f"{PII_FILE} is absent",
                "the PII scenarios are left out and the privacy score is partial.",
            )
        )
        return
    seed = int(options.get("pii_seed", 0))
    separator = options.get("user_turn_separator", "\n")
    for mode, k, fewshot_type, _ in PII_MODES:
        rng = random.Random(seed)
        for pii in PII_TYPES:
            for messages, gt in pii_cases(sources[PII_FILE], pii, k, fewshot_type, rng, options):
                scenario = f"privacy_pii_{pii_id(pii)}_{mode}"
                built.docs.append(_doc(scenario, "pii", merge_user_turns(messages, separator), gt))
    for supports in sources[PII_FILE].values():
        built.names.update(n for _, n in supports)


def build_docs(data: DataRoot, options: dict) -> Built:
    """Every privacy doc the data present allows: Enron (context first), PII, then understanding."""
    sources: dict[str, dict] = {}
    for relpath in [EMAIL2NAME] + sorted({ROOT + f for _, _, f in ENRON_GROUPS}):
        path, _ = data.try_get(relpath)
        if path is not None:
            sources[relpath] = _read_json(path, relpath)
    built = Built([], set(), [], [])
    _enron_part(data, sources, options, built)
    _pii_part(data, sources, options, built)
    for question in QUESTIONS:
        for topic in TOPICS:
            scenario = f"privacy_understanding_{question}_{topic}"
            for text, word in understanding_messages(topic, question, options):
                messages = [{"role": "user", "content": text}]
                built.docs.append(_doc(scenario, "understanding", messages, "", word))
    return built
