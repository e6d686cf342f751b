"""Turn a DecodingTrust message list into the prompt string a model sees.

With `--apply_chat_template` the model's own chat template renders the messages. Templates that
reject a system role make lm-eval silently drop the system message; we detect that and fold the
system text into the first user turn instead (DecodingTrust's rule for such models). Without a chat
template, `render_plain` gives a documented plain-text transcript.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

Message = dict[str, str]


def with_system_instruction(messages: list[Message], instruction: str | None) -> list[Message]:
    """Put lm-eval's `--system_instruction` before the dimension's own system prompt, if any."""
    if not instruction:
        return list(messages)
    if messages and messages[0]["role"] == "system":
        merged = f"{instruction}\n\n{messages[0]['content']}"
        return [{"role": "system", "content": merged}, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]


def fold_system(messages: list[Message]) -> list[Message]:
    """Prepend the system text to the first user message, for templates without a system role."""
    if not messages or messages[0]["role"] != "system":
        return list(messages)
    system, rest = messages[0]["content"], list(messages[1:])
    for i, msg in enumerate(rest):
        if msg["role"] == "user":
            rest[i] = {"role": "user", "content": f"{system}\n\n{msg['content']}"}
            return rest
    return [{"role": "user", "content": system}, *rest]


def render_plain(messages: list[Message]) -> str:
    """Plain transcript for models without a chat template.

    The system text comes first, then `User: ...` / `Assistant: ...` turns separated by a blank
    line, ending with `Assistant:` so the model writes the answer.
    """
    formats = {"system": "{}\n\n", "user": "User: {}\n", "assistant": "Assistant: {}\n\n"}
    return "".join(formats[m["role"]].format(m["content"]) for m in messages) + "Assistant:"


def render(
    messages: list[Message],
    chat_template: Callable[..., str] | None = None,
    system_instruction: str | None = None,
) -> str:
    """The prompt for `messages`; `chat_template` is lm-eval's bound `lm.apply_chat_template`."""
    messages = with_system_instruction(messages, system_instruction)
    if chat_template is None:
        return render_plain(messages)
    prompt = chat_template(messages, add_generation_prompt=True)
    if messages and messages[0]["role"] == "system" and messages[0]["content"] not in prompt:
        log.warning("The chat template dropped the system message; folding it into the first user turn.")
        prompt = chat_template(fold_system(messages), add_generation_prompt=True)
    return prompt
