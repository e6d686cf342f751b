"""`TrustTask`: the one lm-eval task class behind every trust dimension.

A dimension is its YAML (`tasks/<dimension>/trust_<dimension>.yaml`, which includes the shared
`tasks/_trust_template_yaml`) and the pure module the YAML names (see `lm_eval_trust.dimension`).
Everything that differs between dimensions sits under the YAML's `metadata:` (lm-eval rejects
unknown top-level keys), its generation settings and its `metric_list`.

Options read from the merged metadata (YAML defaults, then `--metadata`, which wins):
`scenarios` (names to run; names of other dimensions are ignored), `data_dir`, `n_samples`
(samples per prompt for every sampled scenario, overriding the YAML's per-scenario
`scenario_n_samples` glob patterns), `scenario_generation_kwargs` (per-scenario overrides of
`generation_kwargs`, keyed by scenario name or glob pattern, merged last so they also win over
`--gen_kwargs`), `redact_pii` (mask personal data in logged samples, for dimensions whose data
has some), `docs_per_scenario` and `subsample_seed` (a seeded stratified subsample, see
`lm_eval_trust.subsample`).

Recorded beside the numbers at aggregation, from what the run actually did (lm-eval applies
`--gen_kwargs` after the task is built): `samples_per_prompt`, `coverage` (documents and scenarios
scored, and why each None metric is None) and `comparability` (what two runs must share to be
compared).

Each document yields one scored item, logged under `score`; the other headline metrics carry no
per-document value (null) and, like the per-scenario breakdown, are computed from those items.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
from functools import partial

import datasets
import lm_eval.api.metrics  # noqa: F401  (built-in aggregations first: see `register_aggregation`)
from lm_eval.api.filter import Filter
from lm_eval.api.instance import Instance
from lm_eval.api.registry import register_aggregation, register_filter
from lm_eval.api.task import ConfigurableTask

from lm_eval_trust import chat
from lm_eval_trust.data import DataRoot
from lm_eval_trust.dimension import (
    Dimension,
    Loaded,
    Scores,
    TaskConfigError,
    comparability,
    coverage,
    document_row,
    redacted_row,
    select_scenarios,
)
from lm_eval_trust.secrets import scrub_options
from lm_eval_trust.subsample import run_documents
from lm_eval_trust.workarounds import group_mean_none_when_a_member_is_none, task_config_without_class

log = logging.getLogger(__name__)
group_mean_none_when_a_member_is_none()

AGGREGATION = "trust_dimension"


@register_filter("trust_keep_samples")
class KeepSamples(Filter):
    """Every sample of a prompt, as a list (lm-eval's default `take_first` keeps only the first)."""

    def apply(self, resps, docs):
        return [list(r) for r in resps]


@register_aggregation(AGGREGATION)
def dimension_aggregation(items):
    """Named in the YAMLs' `metric_list`: the dimension's own formula, which `TrustTask` computes."""
    raise TaskConfigError(
        f"aggregation `{AGGREGATION}` is computed by lm_eval_trust.task.TrustTask; use it only in a "
        "task whose YAML includes tasks/_trust_template_yaml"
    )


class TrustTask(ConfigurableTask):
    def __init__(self, config: dict | None = None, **kwargs):
        super().__init__(config=task_config_without_class(config), **kwargs)
        self._scores: tuple[tuple, Scores] | None = None
        self._instances_by_doc: dict[int, list[Instance]] | None = None
        self._request_kwargs: dict[str, dict] = {}
        self._scored_docs: dict[int, dict] = {}
        self._prompts: dict[int, str] = {}  # doc_index -> sha256 of the prompt sent (prompt format)

    @property
    def options(self) -> dict:
        return self.config.metadata or {}

    def download(self, dataset_kwargs=None, **kwargs) -> None:
        options = self.options
        task = self.config.task
        if "dimension" not in options:
            raise TaskConfigError(f"{task}: its YAML must set metadata.dimension")
        metrics = self.config.metric_list or []
        odd = [m.get("metric") for m in metrics if m.get("aggregation") != AGGREGATION]
        if odd:
            raise TaskConfigError(
                f"{task}: metric_list entries {odd} need `aggregation: {AGGREGATION}` (the dimension's "
                "formula over every document's item)"
            )
        self.dimension = Dimension(options["dimension"], [m["metric"] for m in metrics], task)
        for key in ("scenario_generation_kwargs", "scenario_n_samples"):
            if not isinstance(options.get(key) or {}, dict):
                raise TaskConfigError(
                    f"{task}: --metadata {key} must map scenario names or patterns to values, got "
                    f"{options[key]!r}"
                )
        data = DataRoot(options.get("data_dir"), check_manifest=True)
        loaded: Loaded = self.dimension.module.load(data, options)
        self.scenarios = select_scenarios(
            options.get("scenarios"), loaded, self.dimension.module.SCENARIO_PREFIX, task
        )
        docs, subsample = run_documents(
            loaded.docs, self.scenarios, options, task, self.dimension.module.SCENARIO_PREFIX
        )
        if not docs:
            raise TaskConfigError(f"{task}: no documents for scenarios {self.scenarios}")
        clash = sorted(k for k in loaded.info if k in options and loaded.info[k] != options[k])
        if clash:
            raise TaskConfigError(f"{task}: {options['dimension']}.load returned option names {clash}")
        for warning in loaded.info.get("warnings", []):
            log.warning("%s: %s", task, warning)
        self.redact = loaded.redact
        if options.get("redact_pii") and self.redact is None:
            raise TaskConfigError(f"{task} has no personal data to redact; drop redact_pii")
        # Recorded in the results JSON under configs.<task>.metadata; lm-eval merges --model_args
        # into it, so secret-named options (an API key, an HF token) are dropped once read.
        self.config.metadata = scrub_options(
            {**options, **data.describe(), **loaded.info, "scenarios_run": self.scenarios}
        )
        for scenario in self.scenarios:
            self.n_samples_for(scenario)  # a bad n_samples stops the run before any model work
        self.documents_total = sum(1 for d in loaded.docs if d["scenario"] in self.scenarios)
        if subsample is not None:
            self.config.metadata["subsample"] = subsample
        rows, self.messages = zip(*(document_row(d, i) for i, d in enumerate(docs)), strict=True)
        self.dataset = datasets.DatasetDict({"test": datasets.Dataset.from_list(list(rows))})

    def has_training_docs(self) -> bool:
        return False

    def has_validation_docs(self) -> bool:
        return False

    def has_test_docs(self) -> bool:
        return True

    def test_docs(self) -> datasets.Dataset:
        return self.dataset["test"]

    def doc_to_text(self, doc, doc_to_text=None) -> str:
        return json.loads(self.messages[doc["doc_index"]])[-1]["content"]

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
        messages = json.loads(self.messages[doc["doc_index"]])
        template = chat_template if apply_chat_template else None
        try:
            prompt = chat.render(messages, template, system_instruction)
        except ValueError as err:
            if "chat_template is not set" not in str(err):
                raise
            raise TaskConfigError(
                f"{self.config.task}: --apply_chat_template was given but the model's tokenizer has no "
                "chat template; drop --apply_chat_template (prompts are then the plain transcript in the "
                "README) or use a checkpoint whose tokenizer defines one"
            ) from err
        self._prompts[doc["doc_index"]] = hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()
        return prompt

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
        # One settings dict per scenario, shared by its requests (models copy before changing it);
        # built here, after lm-eval has applied --gen_kwargs to the task.
        if scenario not in self._request_kwargs:
            self._request_kwargs[scenario] = self._checked_kwargs(scenario)
        return Instance(
            request_type="generate_until",
            doc=doc,
            arguments=(ctx, self._request_kwargs[scenario]),
            idx=0,
            metadata=(task_name, doc_id, self.n_samples_for(scenario)),
            **kwargs,
        )

    def _checked_kwargs(self, scenario: str) -> dict:
        """The scenario's generation settings, refused when they contradict themselves."""
        kwargs = self.generation_kwargs_for(scenario)
        if kwargs.get("do_sample") and kwargs.get("temperature") == 0:
            raise TaskConfigError(
                f"{self.config.task}: scenario {scenario} samples (do_sample) but --gen_kwargs or the "
                "generation options set temperature=0; for greedy answers pass --gen_kwargs "
                "do_sample=false, or keep sampling with a temperature above 0"
            )
        return kwargs

    def sampled(self) -> dict[str, int]:
        """Samples per prompt of each sampled scenario, under the settings the requests use (lm-eval
        applies --gen_kwargs after the task is built, so this is read after it has)."""
        return {
            s: self.n_samples_for(s) for s in self.scenarios if self.generation_kwargs_for(s).get("do_sample")
        }

    def record_run(self, scores: Scores, items: list) -> None:
        """The results metadata that describe what the numbers stand on and what a comparison needs."""
        meta = self.config.metadata
        meta["breakdown"] = scores.breakdown
        if scores.details is not None:
            meta["details"] = scores.details
        sampled = self.sampled()
        meta.pop("samples_per_prompt", None)
        if sampled:
            meta["samples_per_prompt"] = sampled
        meta["coverage"] = coverage(items, self.scenarios, self.documents_total, scores)
        meta["comparability"] = comparability(
            self.scenarios,
            list(self._scored_docs.values()),
            sampled,
            {s: self.generation_kwargs_for(s) for s in self.scenarios},
            meta,
        )
        # The prompts as sent (chat template, system instruction): equal messages can still differ.
        prompts = sorted(self._prompts.get(i, "") for i in self._scored_docs)
        meta["comparability"]["prompts_sha256"] = hashlib.sha256(json.dumps(prompts).encode()).hexdigest()

    def apply_filters(self) -> None:
        """The YAML's filters (every sample kept), then the dimension's batch scorer over all of them."""
        super().apply_filters()
        instances = self.instances
        resps = [inst.filtered_resps["none"] for inst in instances]
        self._count_empty(resps)
        scored = self.dimension.score_responses(resps, [inst.doc for inst in instances], self.options)
        for inst, resp in zip(instances, scored, strict=True):
            inst.filtered_resps["none"] = resp

    def process_results(self, doc, results) -> dict:
        item = self.dimension.score_item(doc, list(results[0]))
        self._scored_docs[doc["doc_index"]] = doc
        if self.options.get("redact_pii"):
            self._redact_logged(doc, results)
        return {name: item if name == "score" else None for name in self.dimension.headline}

    def _redact_logged(self, doc, results) -> None:
        """Mask personal data in what lm-eval logs for this doc, after it has been scored.

        lm-eval logs the doc, the request arguments and the responses right after
        `process_results`, from these same objects, so they are rewritten in place.
        """
        redact = self.redact
        if self._instances_by_doc is None:
            self._instances_by_doc = {}
            for inst in self.instances:
                self._instances_by_doc.setdefault(inst.doc["doc_index"], []).append(inst)
        doc.update(redacted_row(doc, redact))
        for inst in self._instances_by_doc.get(doc["doc_index"], []):
            inst.arguments = (redact(inst.arguments[0]), *inst.arguments[1:])
            inst.doc = doc
            inst.resps[:] = [redact(r) for r in inst.resps]
        for generations in results:
            generations[:] = [redact(g) for g in generations]

    def scores(self, items: list) -> Scores:
        """The dimension's numbers over the `score` items, once per set of items.

        lm-eval aggregates each headline metric separately; `score` comes first (its items are the
        documents' scored items), the others receive nulls and read the same computation.
        """
        if items and all(item is None for item in items):
            if self._scores is None:
                raise TaskConfigError(f"{self.config.task}: `score` must be aggregated first")
            return self._scores[1]
        key = tuple(map(id, items))
        if self._scores is None or self._scores[0] != key:
            scores = self.dimension.aggregate(items, self.scenarios)
            self.record_run(scores, items)
            self._scores = (key, scores)
        return self._scores[1]

    def _count_empty(self, resps: list[list]) -> None:
        """An empty answer scores as no leak, no toxicity, no agreement: say when most are empty."""
        flat = [g for r in resps for g in r]
        if not flat:
            return
        empty = sum(1 for g in flat if isinstance(g, str) and not g.strip())
        self.config.metadata["empty_generations"] = {"generations": len(flat), "empty": empty}
        if empty * 2 > len(flat):
            log.warning(
                "%s: %d of %d generations are empty, so its score measures silence (an empty answer "
                "leaks nothing and is not toxic); check the model's chat template, stop sequences "
                "and max_gen_toks",
                self.config.task,
                empty,
                len(flat),
            )

    def _metric(self, name: str, items: list):
        return self.scores(items).headline[name]

    def aggregation(self) -> dict:
        return {name: partial(self._metric, name) for name in self.dimension.headline}
