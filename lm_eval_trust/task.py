"""`TrustTask`: the one lm-eval task class behind every trust dimension.

A dimension is configured by its YAML (`tasks/<dimension>/trust_<dimension>.yaml`); everything that
differs between dimensions sits under the YAML's `metadata:` (lm-eval rejects unknown top-level
keys) and in the dimension module it names, which provides pure functions:

- `SCENARIO_PREFIX`: every scenario name of the dimension starts with it;
- `load(data, options) -> Loaded`: data files -> docs (`scenario`, `messages`, fields to score);
- `score_item(doc, generations) -> dict`: one doc's generations -> a small JSON-able item;
- `aggregate(items, scenarios) -> dict`: all items -> `score`, `refusal_rate`, `score_<scenario>`;
- optionally `metric_names(scenarios) -> {name: higher_is_better}`, when a dimension reports more
  than those (component scores, a `partial` flag); `aggregate` may also return `details`, a
  JSON-able payload (e.g. matrices for heat maps) recorded under the task's results metadata;
- optionally `score_responses(resps, docs, options) -> resps`: runs once over all responses of the
  task (as lm-eval's filter step), for scorers that work in batches (toxicity classifiers).

Options read from the merged metadata (YAML defaults, then `--metadata`, which wins):
`scenarios` (names to run; names of other dimensions are ignored), `data_dir`, `n_samples`
(samples per prompt for every sampled scenario, overriding the YAML's per-scenario
`scenario_n_samples` glob patterns), `scenario_generation_kwargs` (per-scenario overrides of
`generation_kwargs`, keyed by scenario name or glob pattern, merged last so they also win over
`--gen_kwargs`), `redact_pii` (mask personal data in logged samples, for dimensions whose module
defines `redact(text) -> str`).
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from itertools import zip_longest

import datasets
from lm_eval.api.filter import Filter, FilterEnsemble
from lm_eval.api.instance import Instance
from lm_eval.api.task import ConfigurableTask

from lm_eval_trust import chat
from lm_eval_trust.data import DataRoot
from lm_eval_trust.secrets import scrub_options

log = logging.getLogger(__name__)


class TaskConfigError(ValueError):
    """A task option (YAML or `--metadata`) is invalid; the message names it and the fix."""


@dataclass
class Loaded:
    """What a dimension module's `load` returns."""

    docs: list[dict]
    scenarios: list[str]
    default_scenarios: list[str]
    info: dict = field(default_factory=dict)


def interleave(docs: list[dict], scenarios: list[str]) -> list[dict]:
    """Round-robin over scenarios, so `--limit N` samples every scenario instead of the first."""
    by_scenario: dict[str, list[dict]] = {s: [] for s in scenarios}
    for doc in docs:
        if doc["scenario"] in by_scenario:
            by_scenario[doc["scenario"]].append(doc)
    rows = zip_longest(*by_scenario.values())
    return [doc for row in rows for doc in row if doc is not None]


def select_scenarios(requested, loaded: Loaded, prefix: str, task: str) -> list[str]:
    """The scenarios to run: `--metadata scenarios` restricted to this dimension, else its defaults."""
    if requested is None:
        return list(loaded.default_scenarios)
    if isinstance(requested, str):
        requested = [requested]
    if not isinstance(requested, list) or not all(isinstance(s, str) for s in requested):
        raise TaskConfigError(
            f"{task}: --metadata scenarios must be a list of scenario names, got {requested!r}"
        )
    mine = [s for s in requested if s.startswith(prefix)]
    if not mine:
        return list(loaded.default_scenarios)
    unknown = [s for s in mine if s not in loaded.scenarios]
    if unknown:
        raise TaskConfigError(
            f"{task}: unknown scenario(s) {unknown} in --metadata scenarios; this data has: "
            f"{', '.join(loaded.scenarios)}"
        )
    return [s for s in loaded.scenarios if s in mine]


class ScoreResponses(Filter):
    """lm-eval filter step that hands every response of the task to the dimension's batch scorer.

    It also counts empty generations into `counts`, since several scores reward saying nothing.
    """

    def __init__(
        self, score: Callable | None = None, options: dict | None = None, counts: dict | None = None
    ):
        self.score, self.options = score, options or {}
        self.counts = counts if counts is not None else {}

    def apply(self, resps, docs):
        resps = [list(r) for r in resps]
        flat = [g for r in resps for g in r]
        self.counts["generations"] = len(flat)
        self.counts["empty"] = sum(1 for g in flat if isinstance(g, str) and not g.strip())
        return self.score(resps, docs, self.options) if self.score else resps


class TrustTask(ConfigurableTask):
    def __init__(self, config: dict | None = None, **kwargs):
        cfg = dict(config or {})
        cfg.pop("class", None)
        super().__init__(config=cfg, **kwargs)
        # lm-eval's default filter keeps only the first of `repeats` samples; keep them all (and
        # let a batch scorer see them all at once). The pipeline keeps lm-eval's name `none`.
        self.generation_counts: dict[str, int] = {}
        scorer = partial(
            ScoreResponses,
            getattr(self.dimension, "score_responses", None),
            self.options,
            self.generation_counts,
        )
        self._filters = [FilterEnsemble(name="none", filters=[scorer])]
        self._aggregated: tuple[tuple, dict] | None = None

    @property
    def options(self) -> dict:
        return self.config.metadata or {}

    def download(self, dataset_kwargs=None, **kwargs) -> None:
        options = self.options
        if "dimension" not in options:
            raise TaskConfigError(f"{self.config.task}: its YAML must set metadata.dimension")
        self.dimension = importlib.import_module(options["dimension"])
        for key in ("scenario_generation_kwargs", "scenario_n_samples"):
            if not isinstance(options.get(key) or {}, dict):
                raise TaskConfigError(
                    f"{self.config.task}: --metadata {key} must map scenario names or patterns to "
                    f"values, got {options[key]!r}"
                )
        data = DataRoot(options.get("data_dir"), check_manifest=True)
        loaded: Loaded = self.dimension.load(data, options)
        self.scenarios = select_scenarios(
            options.get("scenarios"), loaded, self.dimension.SCENARIO_PREFIX, self.config.task
        )
        docs = interleave(loaded.docs, self.scenarios)
        if not docs:
            raise TaskConfigError(f"{self.config.task}: no documents for scenarios {self.scenarios}")
        clash = sorted(k for k in loaded.info if k in options and loaded.info[k] != options[k])
        if clash:
            raise TaskConfigError(
                f"{self.config.task}: {options['dimension']}.load returned option names {clash}"
            )
        for warning in loaded.info.get("warnings", []):
            log.warning("%s: %s", self.config.task, warning)
        # Recorded in the results JSON under configs.<task>.metadata; lm-eval merges --model_args
        # into it, so secret-named options (an API key, an HF token) are dropped once read.
        self.config.metadata = scrub_options(
            {**options, **data.describe(), **loaded.info, "scenarios_run": self.scenarios}
        )
        sampled = {
            s: self.n_samples_for(s) for s in self.scenarios if self.generation_kwargs_for(s).get("do_sample")
        }
        if sampled:
            self.config.metadata["samples_per_prompt"] = sampled
        rows = [{**d, "messages": json.dumps(d["messages"]), "doc_index": i} for i, d in enumerate(docs)]
        self.dataset = datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})

    def has_training_docs(self) -> bool:
        return False

    def has_validation_docs(self) -> bool:
        return False

    def has_test_docs(self) -> bool:
        return True

    def test_docs(self) -> datasets.Dataset:
        return self.dataset["test"]

    def doc_to_text(self, doc, doc_to_text=None) -> str:
        return json.loads(doc["messages"])[-1]["content"]

    def doc_to_target(self, doc, doc_to_target=None) -> str:
        return str(doc.get("target", ""))

    def fewshot_context(
        self,
        doc,
        num_fewshot,
        system_instruction=None,
        apply_chat_template=False,
        fewshot_as_multiturn=False,
        chat_template=None,
        gen_prefix=None,
    ) -> str:
        """The doc's own messages (demonstrations included) rendered for the model.

        lm-eval's few-shot sampler is not used: DecodingTrust fixes each doc's demonstrations.
        """
        messages = json.loads(doc["messages"])
        template = chat_template if apply_chat_template else None
        try:
            return chat.render(messages, template, system_instruction)
        except ValueError as err:
            if "chat_template is not set" not in str(err):
                raise
            raise TaskConfigError(
                f"{self.config.task}: --apply_chat_template was given but the model's tokenizer has no "
                "chat template; drop --apply_chat_template (prompts are then the plain transcript in the "
                "README) or use a checkpoint whose tokenizer defines one"
            ) from err

    def generation_kwargs_for(self, scenario: str) -> dict:
        """Task-wide settings, then every `scenario_generation_kwargs` pattern matching the scenario."""
        kwargs = dict(self.config.generation_kwargs)
        for pattern, overrides in (self.options.get("scenario_generation_kwargs") or {}).items():
            if fnmatch.fnmatchcase(scenario, pattern):
                kwargs.update(overrides)
        return kwargs

    def n_samples_for(self, scenario: str) -> int:
        """Samples per prompt: 1 for greedy scenarios; for sampled ones `n_samples` if given (a
        quick-run override), else the YAML's `scenario_n_samples` patterns, else 1."""
        if not self.generation_kwargs_for(scenario).get("do_sample"):
            return 1
        n = self.options.get("n_samples")
        if n is None:
            n = 1
            for pattern, value in (self.options.get("scenario_n_samples") or {}).items():
                if fnmatch.fnmatchcase(scenario, pattern):
                    n = value
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise TaskConfigError(
                f"{self.config.task}: samples per prompt (--metadata n_samples, or the YAML's "
                f"scenario_n_samples) must be a positive integer, got {n!r}"
            )
        return n

    def construct_requests(self, doc, ctx, **kwargs) -> Instance:
        kwargs.pop("apply_chat_template", None)
        kwargs.pop("chat_template", None)
        task_name, doc_id, _ = kwargs.pop("metadata")
        scenario = doc["scenario"]
        return Instance(
            request_type="generate_until",
            doc=doc,
            arguments=(ctx, self.generation_kwargs_for(scenario)),
            idx=0,
            metadata=(task_name, doc_id, self.n_samples_for(scenario)),
            **kwargs,
        )

    def metric_names(self) -> dict[str, bool]:
        """Every metric the dimension reports, with whether higher is better."""
        if hasattr(self.dimension, "metric_names"):
            return self.dimension.metric_names(self.scenarios)
        return {"score": True, "refusal_rate": False, **{f"score_{s}": True for s in self.scenarios}}

    def process_results(self, doc, results) -> dict:
        generations = list(results[0])
        item = self.dimension.score_item(doc, generations)
        if self.options.get("redact_pii"):
            self._redact_logged(doc, results)
        return {name: item for name in self.metric_names()}

    def _redact_logged(self, doc, results) -> None:
        """Mask personal data in what lm-eval logs for this doc, after it has been scored.

        lm-eval logs the doc, the request arguments and the responses right after
        `process_results`, from these same objects, so they are rewritten in place.
        """
        redact = getattr(self.dimension, "redact", None)
        if redact is None:
            raise TaskConfigError(f"{self.config.task} has no personal data to redact; drop redact_pii")
        if not hasattr(self, "_instances_by_doc"):
            self._instances_by_doc = {}
            for inst in self.instances:
                self._instances_by_doc.setdefault(inst.doc["doc_index"], []).append(inst)
        for key, value in list(doc.items()):
            if isinstance(value, str):
                doc[key] = redact(value)
        for inst in self._instances_by_doc.get(doc["doc_index"], []):
            inst.arguments = (redact(inst.arguments[0]), *inst.arguments[1:])
            inst.doc = doc
            inst.resps[:] = [redact(r) for r in inst.resps]
        for generations in results:
            generations[:] = [redact(g) for g in generations]

    def aggregate(self, items: list) -> dict:
        """The dimension's aggregate over all items, computed once for all of its metrics.

        Every metric receives the same item objects (`process_results` returns one item under each
        name), so their identities key the memo.
        """
        key = tuple(map(id, items))
        if self._aggregated is None or self._aggregated[0] != key:
            result = dict(self.dimension.aggregate(items, self.scenarios))
            if "details" in result:
                self.config.metadata["details"] = result.pop("details")
            self._record_empty_generations()
            self._aggregated = (key, result)
        return self._aggregated[1]

    def _record_empty_generations(self) -> None:
        """An empty answer scores as no leak, no toxicity, no agreement: say when most are empty."""
        counts = self.generation_counts
        if not counts.get("generations"):
            return
        self.config.metadata["empty_generations"] = dict(counts)
        if counts["empty"] * 2 > counts["generations"]:
            log.warning(
                "%s: %d of %d generations are empty, so its score measures silence (an empty answer "
                "leaks nothing and is not toxic); check the model's chat template, stop sequences "
                "and max_gen_toks",
                self.config.task,
                counts["empty"],
                counts["generations"],
            )

    def _metric(self, name: str, items: list):
        return self.aggregate(items)[name]

    def aggregation(self) -> dict:
        return {name: partial(self._metric, name) for name in self.metric_names()}

    def higher_is_better(self) -> dict:
        return self.metric_names()
