"""Privacy prompts from the YAML's templates, as the fork's `utils.py` builds them.

Every prompt string of the YAML is a Jinja template, rendered as the other dimensions render
theirs (strict: a missing variable is an error, not an empty string).
"""

from __future__ import annotations

import functools
import random
import string
from collections.abc import Callable

from lm_eval_trust.dimension import TEMPLATE_ENV

_ALNUM = string.ascii_uppercase + string.ascii_lowercase + string.digits
# utils.py: get_pii_messages_k_shot -> id_generator(size, chars); "canary code" doubles the letters.
PII_GENERATORS = {
    "phone number": (10, string.digits),
    "ssn": (9, string.digits),
    "social security number": (9, string.digits),
    "password": (12, _ALNUM),
    "ssh private key": (12, _ALNUM),
    "secret key": (12, _ALNUM),
    "credit card number": (16, string.digits),
    "passport number": (10, string.ascii_uppercase + string.digits),
    "canary number": (10, string.digits),
    "canary code": (10, string.ascii_uppercase + string.ascii_uppercase),
}


@functools.cache
def template(text: str) -> Callable[..., str]:
    """A YAML template as a function of its variables, compiled once (`load` renders ~250,000)."""
    return TEMPLATE_ENV.from_string(text).render


def enron_prompt(letter: str, name: str, demos: list, options: dict, domain: str | None = None) -> str:
    """`get_prompts_0_shot` / `get_prompts_known_0_shot` / `get_prompts_k_shot`, format `letter`:
    the known domain (when given) or the (e-mail, name) demonstrations, then the query for `name`."""
    if domain is not None:
        prefix = template(options["enron_known_domain"])(domain=domain)
    else:
        demo = template(options["enron_demos"][letter])
        prefix = "".join(demo(name=n, email=e) for e, n in demos)
    return prefix + template(options["enron_queries"][letter])(name=name)


def legacy_clean_up(text: str) -> str:
    """transformers 4.x `clean_up_tokenization`, applied by its `decode` by default when the fork ran
    (transformers 5 ignores `clean_up_tokenization_spaces=True` for BPE tokenizers such as GPT-2's)."""
    for before, after in (
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ):
        text = text.replace(before, after)
    return text


def context_prompt(context: str, k: int, tokenizer, max_chars: int) -> str:
    """`get_prompts_context`: the last `max_chars` characters, then the last k GPT-2 tokens, decoded."""
    ids = tokenizer(context[-max_chars:])["input_ids"][-k:]
    return legacy_clean_up(tokenizer.decode(ids, clean_up_tokenization_spaces=False))


def merge_user_turns(messages: list[dict], separator: str) -> list[dict]:
    """Join consecutive user turns into one, so templates that require alternating roles accept them."""
    merged: list[dict] = []
    for msg in messages:
        if merged and msg["role"] == "user" and merged[-1]["role"] == "user":
            merged[-1] = {"role": "user", "content": merged[-1]["content"] + separator + msg["content"]}
        else:
            merged.append(dict(msg))
    return merged


def pii_value(rng: random.Random, pii: str, email: str, addresses: list[str]) -> str:
    """One synthetic value, drawn as `get_pii_messages_k_shot` does (`id_generator`, `address_generator`)."""
    if pii == "email address":
        return email
    if pii == "address":
        return addresses[rng.choice(range(len(addresses)))]
    size, chars = PII_GENERATORS[pii]
    return "".join(rng.choice(chars) for _ in range(size))


def pii_cases(
    five_shot: dict, pii: str, k: int, fewshot_type: str, rng: random.Random, options: dict
) -> list[tuple[list[dict], str]]:
    """`utils.py: get_pii_messages_k_shot`: (messages, ground truth) for the first `pii_cases` accepted keys."""
    system = template(options["pii_system"])(pii=pii)
    context_t = template(options["pii_context"])
    question_t = template(options["pii_question"])
    protect = template(options["pii_protect_answer"])(pii=pii)
    cases = []
    for supports in five_shot.values():
        if len(cases) == int(options["pii_cases"]):
            break
        values = [pii_value(rng, pii, email, options["pii_addresses"]) for email, _ in supports]
        names = [name for _, name in supports]
        if names[k] in names[:k]:
            continue
        context = "".join(context_t(name=n, pii=pii, value=v) for n, v in zip(names, values, strict=True))
        messages = [{"role": "system", "content": system}, {"role": "user", "content": context}]
        for i in range(k):
            messages.append({"role": "user", "content": question_t(name=names[i], pii=pii)})
            answer = protect if fewshot_type == "protect" else values[i]
            messages.append({"role": "assistant", "content": answer})
        messages.append({"role": "user", "content": question_t(name=names[k], pii=pii)})
        cases.append((messages, values[k]))
    return cases


def understanding_messages(topic: str, question: str, options: dict) -> list[tuple[str, str]]:
    """`utils.py: get_privacy_understanding_messages`: (user text, keyword) for each of the 17 templates."""
    persons = options["understanding_persons"]
    info, phrase = options["understanding_topics"][topic]
    q = template(options["understanding_questions"][question])(**persons, phrase=phrase)
    prompt_t = template(options["understanding_prompt"])
    out = []
    for text, word in options["understanding_templates"]:
        secret = template(text)(**persons, info=info)
        out.append((prompt_t(secret=secret, question=q), word))
    return out
