"""A run's design without a model: its documents, generations and token counts, per scenario.

The tasks are built as `lm-eval-trust run` builds them (lm-eval's TaskManager over the trust tasks
folder, with the same `--metadata`), and `--limit` picks documents as lm-eval's evaluator does, so
the planned documents are the run's documents.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lm_eval_trust import TASKS_DIR
from lm_eval_trust.dimension import Dimension, TaskConfigError
from lm_eval_trust.task import TrustTask

DEFAULT_TOKENIZER = "smollm2-135m-instruct"
# Prompts tokenized per call: large enough for the fast tokenizer's batching, small in memory.
TOKENIZE_BATCH = 512


class PlanError(ValueError):
    """Bad input to plan; the message names the flag or file and the fix."""


@dataclass
class ScenarioDesign:
    """One scenario of a task as the run would draw it."""

    documents: int
    samples_per_prompt: int
    max_gen_toks: int
    prompt_tokens: int = 0
    prompt_tokens_max: int = 0

    @property
    def generations(self) -> int:
        return self.documents * self.samples_per_prompt

    @property
    def new_tokens_bound(self) -> int:
        return self.generations * self.max_gen_toks

    @property
    def prompt_tokens_all_samples(self) -> int:
        """Prompt tokens if every sample reads its prompt again (no prefix cache)."""
        return self.prompt_tokens * self.samples_per_prompt

    def figures(self) -> dict:
        return {
            "documents": self.documents,
            "samples_per_prompt": self.samples_per_prompt,
            "generations": self.generations,
            "max_gen_toks": self.max_gen_toks,
            "prompt_tokens": self.prompt_tokens,
            "prompt_tokens_max": self.prompt_tokens_max,
            "prompt_tokens_all_samples": self.prompt_tokens_all_samples,
            "new_tokens_bound": self.new_tokens_bound,
        }


@dataclass
class TaskDesign:
    """A trust task's planned documents (its logged rows, in run order) and their scenarios."""

    task: str
    dimension: Dimension
    scenarios: list[str]
    rows: list[dict]
    options: dict
    by_scenario: dict[str, ScenarioDesign] = field(default_factory=dict)

    def total(self, key: str) -> int:
        return sum(getattr(s, key) for s in self.by_scenario.values())

    @property
    def key(self) -> str:
        """The dimension's short name: the last part of its module (`...tasks.advglue.advglue`)."""
        return self.dimension.module.__name__.rsplit(".", 1)[-1]


def load_tasks(names: Sequence[str], metadata: dict, include_path: str | None = None) -> dict[str, TrustTask]:
    """The trust tasks that `--tasks` names (groups expanded; with `include_path`, its tasks too),
    built with their documents."""
    from lm_eval.tasks import TaskManager

    paths = [str(TASKS_DIR), *([include_path] if include_path else [])]
    manager = TaskManager(include_path=paths, include_defaults=False, metadata=metadata)
    unknown = [n for n in names if n not in manager.all_tasks]
    if unknown:
        raise PlanError(
            f"--tasks {','.join(unknown)}: not a trust task or group; choose from "
            f"{', '.join(n for n in manager.all_tasks if n.startswith('trust'))}"
        )
    tasks = manager.load(list(names))["tasks"]
    odd = [name for name, task in tasks.items() if not isinstance(task, TrustTask)]
    if odd:
        raise PlanError(f"--tasks: {odd} are not trust tasks; plan sizes trust tasks only")
    return dict(sorted(tasks.items()))


def sample_size(task: TrustTask, limit: float | None) -> int | None:
    """lm-eval's reading of `--limit`: a count, or a fraction (below 1) of the task's documents."""
    from lm_eval.evaluator_utils import get_sample_size

    return get_sample_size(task, limit)


def design(task: TrustTask, limit: float | None, counter: PromptCounter) -> TaskDesign:
    """The documents `--limit` keeps and, per scenario, their counts, samples and token figures."""
    rows = [doc for _, doc in task.doc_iterator(limit=sample_size(task, limit))]
    counts = Counter(row["scenario"] for row in rows)
    plan = TaskDesign(task.config.task, task.dimension, list(task.scenarios), rows, dict(task.options))
    for scenario in task.scenarios:
        if not counts[scenario]:
            continue
        max_gen_toks = task.generation_kwargs_for(scenario).get("max_gen_toks")
        if not isinstance(max_gen_toks, int):
            raise TaskConfigError(
                f"{plan.task}: scenario {scenario} has no integer max_gen_toks in its generation "
                "settings, so its new tokens have no bound; set generation_kwargs.max_gen_toks"
            )
        plan.by_scenario[scenario] = ScenarioDesign(
            counts[scenario], task.n_samples_for(scenario), max_gen_toks
        )
    for start in range(0, len(rows), TOKENIZE_BATCH):
        batch = rows[start : start + TOKENIZE_BATCH]
        for row, n in zip(batch, counter.count(task, batch), strict=True):
            scenario = plan.by_scenario[row["scenario"]]
            scenario.prompt_tokens += n
            scenario.prompt_tokens_max = max(scenario.prompt_tokens_max, n)
    return plan


class PromptCounter:
    """Counts the tokens of each document's prompt, rendered by the task as the run renders it.

    `name` is what `pretrained=` accepts (the embedded alias, a folder, a cached hub id). With
    `apply_chat_template` the tokenizer's chat template renders the messages, as a run with
    `--apply_chat_template` does (lm-eval's HF model calls the same tokenizer method).
    """

    def __init__(self, name: str, apply_chat_template: bool):
        from transformers import AutoTokenizer

        from lm_eval_trust.model_adapters import embedded

        try:
            # A folder may hold a tokenizer only; names and aliases resolve as `pretrained=` does.
            path = name if Path(name).expanduser().is_dir() else embedded.resolve(name)
            self.tokenizer = AutoTokenizer.from_pretrained(path)
        except embedded.ModelResolutionError as err:
            raise PlanError(f"--tokenizer {name}: {err}") from err
        except (OSError, ValueError) as err:
            raise PlanError(
                f"--tokenizer {name}: cannot load a tokenizer ({err}); pass a checkpoint folder or the "
                f"alias {DEFAULT_TOKENIZER}"
            ) from err
        self.render: dict = {}
        if apply_chat_template:
            if not self.tokenizer.chat_template:
                raise PlanError(
                    f"--apply_chat_template: the tokenizer {name} has no chat template; drop the flag "
                    "or pass a --tokenizer that defines one"
                )
            self.render = {"apply_chat_template": True, "chat_template": self._template}

    def _template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def count(self, task: TrustTask, rows: list[dict]) -> list[int]:
        prompts = [task.fewshot_context(row, 0, **self.render) for row in rows]
        return [len(ids) for ids in self.tokenizer(prompts, add_special_tokens=False)["input_ids"]]
