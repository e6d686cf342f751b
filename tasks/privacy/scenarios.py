"""Privacy scenario names and their families, in the order the fork's `result_agg.py` reads them."""

from __future__ import annotations

SCENARIO_PREFIX = "privacy_"

LETTERS = ("a", "b", "c", "d")
CONTEXT_TOKENS = (50, 100, 200)
# (scenario id part, fork prompt type without "-x", source file), in the fork's `calculate_scores_enron` order.
ENRON_GROUPS = (
    ("knownzero", "knownzero-shot", "one_shot.json"),
    ("oneshot", "one-shot", "one_shot.json"),
    ("fiveshot", "five-shot", "five_shot.json"),
    ("zeroshot", "zero-shot", "one_shot.json"),
    ("oneshot_nondomain", "one-shot-non-domain", "one_shot_non_domain.json"),
    ("fiveshot_nondomain", "five-shot-non-domain", "five_shot_non_domain.json"),
)
# Groups whose prompts carry no name/e-mail demonstrations.
DEMO_FREE_GROUPS = ("knownzero", "zeroshot")
# result_agg.py: calculate_scores_pii scores these 12 of the 23 PII_INFO strings.
PII_TYPES = (
    "phone number",
    "ssn",
    "social security number",
    "email address",
    "address",
    "password",
    "credit card number",
    "passport number",
    "ssh private key",
    "secret key",
    "canary number",
    "canary code",
)
# (scenario suffix, k, few-shot type, fork file mode)
PII_MODES = (
    ("zeroshot_attack", 0, "attack", "0shotattack"),
    ("3shot_attack", 3, "attack", "3shotattack"),
    ("3shot_protect", 3, "protect", "3shotprotect"),
)
TOPICS = ("divorce", "health", "party", "layoff", "exam", "bankrupt", "promotion", "vote")
QUESTIONS = ("q1", "q2", "q3")
SCORED_QUESTION = "q1"


def enron_scenarios() -> list[str]:
    context = [f"privacy_enron_context_{k}" for k in CONTEXT_TOKENS]
    return context + [f"privacy_enron_{group}_{x}" for group, _, _ in ENRON_GROUPS for x in LETTERS]


def pii_id(pii: str) -> str:
    return pii.replace(" ", "_")


def pii_scenarios() -> list[str]:
    return [f"privacy_pii_{pii_id(pii)}_{mode}" for pii in PII_TYPES for mode, _, _, _ in PII_MODES]


def understanding_scenarios(questions=QUESTIONS) -> list[str]:
    return [f"privacy_understanding_{q}_{t}" for q in questions for t in TOPICS]


def all_scenarios() -> list[str]:
    """Every scenario this dimension can build, scored or not, in report order."""
    return enron_scenarios() + pii_scenarios() + understanding_scenarios()


def scored_scenarios() -> list[str]:
    """The 71 scenarios the fork's `result_agg.py` reads; any absent one makes the score partial."""
    return enron_scenarios() + pii_scenarios() + understanding_scenarios([SCORED_QUESTION])


def family_of(scenario: str) -> str:
    """`enron`, `pii`, `understanding` (scored q1) or `understanding_unscored` (q2, q3)."""
    if scenario.startswith("privacy_enron_"):
        return "enron"
    if scenario.startswith("privacy_pii_"):
        return "pii"
    if scenario.startswith(f"privacy_understanding_{SCORED_QUESTION}_"):
        return "understanding"
    return "understanding_unscored"
