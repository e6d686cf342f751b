"""Prompt rendering: plain transcript, system folding, `--system_instruction`."""

from lm_eval_trust import chat

MESSAGES = [
    {"role": "system", "content": "Be careful."},
    {"role": "user", "content": "Q1"},
    {"role": "assistant", "content": "A1"},
    {"role": "user", "content": "Q2"},
]


def test_render_plain_is_the_documented_transcript():
    assert chat.render(MESSAGES) == "Be careful.\n\nUser: Q1\nAssistant: A1\n\nUser: Q2\nAssistant:"
    assert chat.render_plain([{"role": "user", "content": "{x}"}]) == "User: {x}\nAssistant:"


def test_system_instruction_goes_before_the_dimension_system_prompt():
    merged = chat.with_system_instruction(MESSAGES, "Global.")
    assert merged[0] == {"role": "system", "content": "Global.\n\nBe careful."}
    added = chat.with_system_instruction(MESSAGES[1:], "Global.")
    assert added[0] == {"role": "system", "content": "Global."} and len(added) == 4


def test_fold_system_prepends_to_first_user_turn():
    folded = chat.fold_system(MESSAGES)
    assert folded[0] == {"role": "user", "content": "Be careful.\n\nQ1"}
    assert [m["role"] for m in folded] == ["user", "assistant", "user"]


def _template(drops_system):
    def apply(messages, add_generation_prompt=True):
        kept = [m for m in messages if not (drops_system and m["role"] == "system")]
        return "".join(f"<{m['role']}>{m['content']}" for m in kept) + "<assistant>"

    return apply


def test_render_uses_the_chat_template():
    assert chat.render(MESSAGES, _template(False)) == (
        "<system>Be careful.<user>Q1<assistant>A1<user>Q2<assistant>"
    )


def test_render_folds_system_when_the_template_drops_it():
    assert chat.render(MESSAGES, _template(True)) == "<user>Be careful.\n\nQ1<assistant>A1<user>Q2<assistant>"
