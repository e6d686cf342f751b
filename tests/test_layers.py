"""The README's layering ("Architecture in brief") holds: a module imports our code only from its
own layer or the layers above it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Top to bottom, as the README draws them; a name is a module of lm_eval_trust or a folder.
LAYERS = [
    {
        "__init__", "atomic", "data", "chat", "dimension", "subsample", "compression", "workarounds",
        "secrets", "output_folder", "vllm_env", "stats", "metrics", "bounds", "classification",
    },
    {"task"},
    {"model_adapters"},
    {"scoring"},
    {"tasks"},
    {"preflight", "report"},
    {"rescore"},
    {"plan", "cluster", "sweep"},
    {"cli"},
]  # fmt: skip
FOLDERS = ("tasks", "model_adapters", "plan", "report", "scoring", "cluster")


def unit(module: str) -> str:
    """`lm_eval_trust.report.runs` -> `report`; `lm_eval_trust.task` -> `task`."""
    parts = module.split(".")[1:] or ["__init__"]
    return parts[0]


def module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] in ("tasks", "model_adapters"):
        parts = ["lm_eval_trust", *parts]
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lm_eval_trust"):
            if node.module == "lm_eval_trust":  # a submodule, or a name of the package's __init__
                found |= {
                    f"lm_eval_trust.{a.name}" if a.name.islower() else "lm_eval_trust.__init__"
                    for a in node.names
                }
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lm_eval_trust.")}
    return {m for m in found if m != "lm_eval_trust.tasks"}  # the package itself: a folder path


def layer(name: str) -> int:
    (index,) = [i for i, units in enumerate(LAYERS) if name in units]
    return index


def test_every_import_of_our_code_points_up_or_sideways():
    wrong = []
    for folder in ("lm_eval_trust", "tasks", "model_adapters"):
        for path in (ROOT / folder).rglob("*.py"):
            mine = unit(module_of(path))
            for target in imports(path):
                theirs = unit(target)
                if layer(theirs) > layer(mine):
                    wrong.append(
                        f"{path.relative_to(ROOT)} ({mine}) imports {target} ({theirs}, a lower layer)"
                    )
    assert not wrong, "\n".join(wrong)


def test_the_readme_draws_the_same_order():
    text = (ROOT / "README.md").read_text()
    block = text[text.index("## Architecture in brief") :]
    block = block[: block.index("\n```\n", block.index("```") + 3)]
    drawn = []
    for line in block.splitlines():
        name = line.split()[0] if line.strip() and not line.startswith(" ") else ""
        if name.startswith(("lm_eval_trust/", "tasks/", "model_adapters/")):
            parts = name.rstrip("/").split("/")
            drawn.append(parts[0] if parts[0] in FOLDERS else parts[-1].removesuffix(".py"))
    order = [layer(u) for u in drawn]
    assert order == sorted(order), list(zip(drawn, order, strict=True))
    assert {u for units in LAYERS[1:] for u in units} <= set(drawn)
