"""Bad data and task options: each is an error naming the file, value or flag and the fix.

Covered elsewhere: a missing data root (test_data.py::test_data_root_nonexistent_explicit_dir_is_an_error),
a missing file (test_advglue.py::test_load_without_any_data_names_both_files,
test_stereotype.py::test_missing_system_prompts_file_names_the_fetch_command,
test_data.py::test_data_root_explicit_root_never_downloads,
test_data.py::test_data_root_cache_mode_reports_fetch_failure), corrupted files found by
`data verify` and by `data fetch` (test_data.py::test_verify_sorts_files_into_ok_missing_mismatched,
test_data.py::test_fetch_replaces_a_corrupt_local_copy,
test_data.py::test_data_root_cache_mode_rejects_corrupt_download), malformed rows in each
dimension's files (test_advglue.py::test_load_rejects_malformed_json,
test_adv_demo.py::test_malformed_rows_name_the_file_and_line,
test_stereotype.py::test_malformed_files_and_options_are_errors,
test_ethics.py::test_bad_rows_and_options_are_errors,
test_fairness.py::test_attribute_rows_must_match_the_prompts), an unknown scenario
(test_task.py::test_unknown_scenario_is_named_with_the_valid_ones,
test_integration.py::test_scenarios_are_selected_with_metadata).
"""

import json
import shutil

import pytest

from lm_eval_trust import TASKS_DIR
from lm_eval_trust.data import DataError, DataRoot, read_jsonl
from lm_eval_trust.dimension import TaskConfigError
from lm_eval_trust.scoring import offline, toxicity

TOXIC = "decodingtrust/data/toxicity/user_prompts/toxic.jsonl"
DEV = "advglue/dev.json"


def load_task(name: str, metadata: dict | None = None):
    """A trust task built as lm-eval builds it (download included), without indexing lm-eval's own tasks."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata or {})
    return manager.load([name])["tasks"][name]


def _copy(shared_data, root, relpath):
    dest = root / relpath
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shared_data / relpath, dest)
    return dest


def _cut_at_a_line_end(path, keep_lines=100):
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:keep_lines]), encoding="utf-8")


def test_a_file_cut_at_a_line_end_still_parses_but_is_caught(shared_data, tmp_path):
    path = _copy(shared_data, tmp_path, TOXIC)
    _cut_at_a_line_end(path)
    assert len(read_jsonl(path)) == 100, "without the manifest check this would score 100 prompts"
    root = DataRoot(tmp_path, cache=tmp_path / "cache", check_manifest=True)
    with pytest.raises(DataError, match="does not match the manifest") as err:
        root.get(TOXIC)
    assert str(path) in str(err.value)
    assert f"lm-eval-trust data fetch --data_dir {tmp_path} --force --path {TOXIC}" in str(err.value)
    with pytest.raises(DataError, match="does not match the manifest"):
        root.try_get(TOXIC)  # a damaged file is no reason for a documented fallback


def test_an_edited_file_is_an_error_in_a_run(shared_data, tmp_path):
    """A changed label keeps the JSON valid and would change the score silently."""
    path = _copy(shared_data, tmp_path, DEV)
    dev = json.loads(path.read_text())
    dev["sst2"][0]["label"] = 1 - dev["sst2"][0]["label"]
    path.write_text(json.dumps(dev))
    with pytest.raises(DataError, match=f"--path {DEV}"):
        load_task("trust_advglue", {"data_dir": str(tmp_path)})


def test_a_damaged_file_in_the_user_cache_is_fetched_again(shared_data, tmp_path, monkeypatch):
    monkeypatch.delenv("TRUST_DATA_DIR", raising=False)
    monkeypatch.setenv("TRUST_DATA_URL", shared_data.as_uri())
    cache = tmp_path / "cache"
    path = _copy(shared_data, cache, DEV)
    path.write_text(path.read_text()[:1000])
    root = DataRoot(cache=cache, check_manifest=True)
    assert root.get(DEV) == path
    assert path.read_bytes() == (shared_data / DEV).read_bytes()


@pytest.mark.parametrize(
    "content, required, message",
    [
        ('{"a": 1}\n{"a": \n', (), r"rows\.jsonl:2 is not valid JSON"),
        ('{"a": 1}\n\n{"b": 2}\n', ("a",), r"rows\.jsonl:3 lacks field\(s\) \['a'\]"),
    ],
)
def test_read_jsonl_names_the_file_line_and_fix(tmp_path, content, required, message):
    path = tmp_path / "rows.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as err:
        read_jsonl(path, required)
    assert "re-fetch" in str(err.value)


def test_toxicity_files_with_bad_rows_are_refused_before_a_scorer_fits_on_them(tmp_path, monkeypatch):
    """A fit is cached and read by every later run, so its training files are checked against the
    manifest even where the mirror is not (scorer-agreement, rescore)."""
    monkeypatch.setenv("TRUST_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / TOXIC
    path.parent.mkdir(parents=True)
    path.write_text('{"prompt": {"text": "a"}, "continuation": {"text": "b"}}\n{"prompt": {}}\n')
    (path.parent / "nontoxic.jsonl").write_text("")
    with pytest.raises(DataError, match=r"toxic\.jsonl does not match the manifest .* Re-fetch it with"):
        offline.rtp_records(DataRoot(tmp_path, cache=tmp_path / "cache"))
    with pytest.raises(DataError, match=r"toxic\.jsonl does not match the manifest"):
        offline.OfflineScorer(DataRoot(tmp_path, cache=tmp_path / "cache"))
    assert not list((tmp_path / "cache" / "scorers").glob("*.pkl")), "nothing unverified is cached"


def test_a_mirror_cut_at_a_line_end_cannot_fill_the_scorer_cache(shared_data, tmp_path, monkeypatch):
    """A JSONL file cut at a line end still parses; it is refused by its hash, not fitted on."""
    monkeypatch.setenv("TRUST_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "mirror" / offline.TOXICITY_DIR
    shutil.copytree(shared_data / offline.TOXICITY_DIR, folder)
    cut = folder / offline.RTP_FILES[1]
    cut.chmod(0o644)
    cut.write_text("".join(cut.read_text().splitlines(keepends=True)[:600]))
    data = DataRoot(tmp_path / "mirror", cache=tmp_path / "cache")
    with pytest.raises(DataError, match=rf"{offline.RTP_FILES[1]} does not match the manifest"):
        toxicity.get_scorer("offline", {}, data)
    assert not list((tmp_path / "cache" / "scorers").glob("*.pkl"))


@pytest.mark.parametrize(
    "metadata, message",
    [
        ({"n_samples": 0}, r"--metadata n_samples.* must be a positive integer, got 0"),
        ({"n_samples": "5"}, r"--metadata n_samples.* must be a positive integer, got '5'"),
        ({"scenarios": 5}, "--metadata scenarios must be a list of scenario names, got 5"),
        ({"scenario_generation_kwargs": ["x"]}, "--metadata scenario_generation_kwargs must map"),
    ],
)
def test_bad_task_options_name_the_flag(shared_data, metadata, message):
    with pytest.raises(TaskConfigError, match=message):
        load_task("trust_stereotype", metadata)


def test_limit_zero_is_an_error_naming_the_flag(run_cli, tiny_model):
    proc = run_cli(
        "lm-eval-trust",
        *("--model", "trust-hf", "--model_args", f"pretrained={tiny_model}", "--tasks", "trust_advglue"),
        *("--limit", "0"),
        check=False,
    )
    assert proc.returncode == 2
    assert "--limit 0 selects no documents" in proc.stderr and "Traceback" not in proc.stderr
