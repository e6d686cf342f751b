"""TrustTask's scenario handling: interleaving for `--limit`, scenario selection errors."""

import pytest

from lm_eval_trust.dimension import Loaded, TaskConfigError, interleave, select_scenarios


def _docs(counts):
    return [{"scenario": s, "i": i} for s, n in counts.items() for i in range(n)]


def test_interleave_round_robins_so_a_prefix_covers_every_scenario():
    docs = interleave(_docs({"a": 3, "b": 1, "c": 2}), ["a", "b", "c"])
    assert [(d["scenario"], d["i"]) for d in docs] == [
        ("a", 0),
        ("b", 0),
        ("c", 0),
        ("a", 1),
        ("c", 1),
        ("a", 2),
    ]


def test_interleave_drops_unselected_scenarios():
    assert {d["scenario"] for d in interleave(_docs({"a": 2, "b": 2}), ["b"])} == {"b"}


LOADED = Loaded(docs=[], scenarios=["x_a", "x_b", "x_c"], default_scenarios=["x_a", "x_b"])


def test_default_scenarios_when_none_requested():
    assert select_scenarios(None, LOADED, "x_", "t") == ["x_a", "x_b"]


def test_requested_scenarios_keep_data_order_and_ignore_other_dimensions():
    assert select_scenarios(["x_c", "x_a", "y_z"], LOADED, "x_", "t") == ["x_a", "x_c"]
    assert select_scenarios("x_c", LOADED, "x_", "t") == ["x_c"]
    assert select_scenarios(["y_z"], LOADED, "x_", "t") == ["x_a", "x_b"]


def test_unknown_scenario_is_named_with_the_valid_ones():
    with pytest.raises(TaskConfigError, match=r"x_nope.*x_a, x_b, x_c"):
        select_scenarios(["x_nope"], LOADED, "x_", "trust_x")
