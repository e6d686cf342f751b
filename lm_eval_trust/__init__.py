"""lm-eval-trust: DecodingTrust's trust dimensions as lm-evaluation-harness tasks."""

from pathlib import Path

import lm_eval_trust.tasks as _tasks

TASKS_DIR = Path(_tasks.__file__).resolve().parent
