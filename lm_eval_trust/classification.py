"""DecodingTrust's classification message layout (`Chat.do_classification`, spec section 1.4).

Used by every dimension that asks for a label with or without demonstrations. The strings it needs
(system prompts, the assistant's acknowledgement) come from the dimension's YAML, verbatim.
"""

from __future__ import annotations

from collections.abc import Sequence


def classification_messages(
    task_message: str, text: str, examples: Sequence[Sequence[str]], prompts: dict
) -> list[dict]:
    """Zero-shot: system + one user turn; few-shot: demonstrations as prior chat turns.

    `prompts` holds `system_zero_shot`, `system_few_shot` and `acknowledgement`. Demonstration
    answers are capitalized, as DecodingTrust sends them ("positive" -> "Positive").
    """
    if not examples:
        return [
            {"role": "system", "content": prompts["system_zero_shot"]},
            {"role": "user", "content": f"{task_message}\n{text}"},
        ]
    messages = [
        {"role": "system", "content": prompts["system_few_shot"]},
        {"role": "user", "content": task_message},
        {"role": "assistant", "content": prompts["acknowledgement"]},
    ]
    for demo_text, demo_label in examples:
        messages.append({"role": "user", "content": demo_text})
        messages.append({"role": "assistant", "content": str(demo_label).capitalize()})
    messages.append({"role": "user", "content": text})
    return messages
