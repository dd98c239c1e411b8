"""The rule labeler: every finding, negation, uncertainty, history/hypothesis, sections, label wording,
"no finding" rules, truncation, concurrency and the registered summariser."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from medrag.labels import MAX_CHARS, label_text, label_texts, strip_skipped_sections, truncate_for_labeling
from medrag.reasoners.rules import RulesSummariser
from medrag.records import FINDINGS, Summary


@pytest.fixture(scope="module", autouse=True)
def _warm() -> None:
    label_text("warm up")  # builds the medspaCy pipeline once for the module


def _status(text: str, finding: str) -> str:
    return label_text(text).findings[finding]


@pytest.mark.parametrize(
    ("text", "finding"),
    [
        ("The heart is enlarged.", "cardiomegaly"),
        ("Cardiomegaly.", "cardiomegaly"),
        ("Heart size is mildly enlarged.", "cardiomegaly"),
        ("Small left pleural effusion.", "effusion"),
        ("Bilateral effusions.", "effusion"),
        ("Large right pneumothorax.", "pneumothorax"),
        ("Right lower lobe consolidation.", "consolidation"),
        ("Patchy opacity at the left base.", "opacity"),
        ("Bibasilar airspace disease.", "opacity"),
        ("Subsegmental atelectasis at the left base.", "atelectasis"),
        ("Interstitial pulmonary edema.", "edema"),
        ("Pulmonary vascular congestion.", "edema"),
        ("A 1 cm nodule in the right upper lobe.", "nodule/mass"),
        ("Left hilar mass.", "nodule/mass"),
        ("Right lower lobe pneumonia.", "pneumonia"),
        ("Acute fracture of the left 6th rib.", "fracture"),
        ("Endotracheal tube 4 cm above the carina.", "support devices"),
        ("Left chest wall pacemaker.", "support devices"),
        ("Emphysema.", "emphysema"),
        ("Changes of COPD.", "emphysema"),
    ],
)
def test_every_finding_is_detected_when_affirmed(text: str, finding: str) -> None:
    summary = label_text(text)
    assert summary.findings[finding] == "present", summary
    assert summary.findings["no finding"] == "absent" or finding == "support devices"


@pytest.mark.parametrize(
    ("text", "finding"),
    [
        ("No pleural effusion.", "effusion"),
        ("No pleural effusion or pneumothorax.", "pneumothorax"),
        ("Lungs are clear without consolidation.", "consolidation"),
        ("Negative for pneumonia.", "pneumonia"),
        ("The lungs are free of focal opacity.", "opacity"),
        ("Lungs are clear of airspace disease.", "opacity"),
        ("The previously seen effusion has resolved.", "effusion"),
        ("Heart size and pulmonary vascular engorgement appear within normal limits.", "edema"),
        ("Heart is not enlarged.", "cardiomegaly"),
        ("Heart size is normal.", "cardiomegaly"),
        ("The cardiomediastinal silhouette is within normal limits.", "cardiomegaly"),
        ("No acute fracture is seen.", "fracture"),
        ("Pneumothorax is not identified.", "pneumothorax"),
    ],
)
def test_negated_mentions_are_absent(text: str, finding: str) -> None:
    assert _status(text, finding) == "absent"


@pytest.mark.parametrize(
    ("text", "finding"),
    [
        ("Subcutaneous emphysema in the left chest wall.", "emphysema"),
        ("Pericardial effusion.", "effusion"),
        ("History of pneumonia.", "pneumonia"),
        ("Evaluate for pneumothorax.", "pneumothorax"),
        ("Large right pleural effusion.", "cardiomegaly"),
    ],
)
def test_other_meaning_history_and_unsaid_findings_are_not_mentioned(text: str, finding: str) -> None:
    # Four statuses: what the text never says about *this* finding is "not mentioned", never "absent".
    assert _status(text, finding) == "not mentioned"


def test_normal_heart_wording_does_not_hide_a_stated_cardiomegaly() -> None:
    assert _status("Normal heart size. Mild cardiomegaly.", "cardiomegaly") == "present"


@pytest.mark.parametrize(
    ("text", "finding"),
    [
        ("Left basilar opacity may represent atelectasis.", "atelectasis"),
        ("Pneumonia cannot be excluded.", "pneumonia"),
        ("Cannot exclude a small pneumothorax.", "pneumothorax"),
        ("Possible small left effusion.", "effusion"),
        ("Findings likely reflect atelectasis.", "atelectasis"),
        ("Appearance suggestive of pulmonary edema.", "edema"),
        ("Atelectasis versus pneumonia.", "pneumonia"),
        ("Atelectasis versus pneumonia.", "atelectasis"),
        ("Questionable nodule in the right midlung.", "nodule/mass"),
    ],
)
def test_hedged_mentions_are_uncertain(text: str, finding: str) -> None:
    assert _status(text, finding) == "uncertain"


def test_versus_does_not_spread_to_the_whole_sentence() -> None:
    summary = label_text("Left lower lobe opacity, atelectasis versus pneumonia.")
    assert summary.findings["opacity"] == "present"
    assert summary.findings["pneumonia"] == "uncertain"


@pytest.mark.parametrize(
    "text",
    [
        "History of pneumonia. Lungs are clear.",
        "If symptoms persist, CT could be performed to evaluate for pneumonia.",
        "Recommend follow-up to assess for pneumonia.",
    ],
)
def test_historical_and_hypothetical_mentions_are_not_mentioned(text: str) -> None:
    # They say nothing about this image: neither present nor explicitly negated.
    assert _status(text, "pneumonia") == "not mentioned"


def test_pseudo_negation_keeps_the_finding() -> None:
    assert _status("No change in the small left pleural effusion.", "effusion") == "present"
    assert _status("No significant change in cardiomegaly.", "cardiomegaly") == "present"


def test_present_wins_over_a_negated_mention_elsewhere() -> None:
    summary = label_text("FINDINGS: No effusion on the right. IMPRESSION: Small left pleural effusion.")
    assert summary.findings["effusion"] == "present"


def test_sections_about_something_else_are_ignored() -> None:
    text = "INDICATION: Fever, rule out pneumonia.\nCOMPARISON: Prior pneumothorax.\nFINDINGS: Lungs are clear."
    summary = label_text(text)
    assert summary.findings["pneumonia"] == "not mentioned"
    assert summary.findings["pneumothorax"] == "not mentioned"
    assert summary.findings["no finding"] == "present"
    assert "pneumonia" not in strip_skipped_sections(text)


def test_similar_case_evidence_section_of_a_reasoning_text_is_ignored() -> None:
    text = (
        "## Lungs\nThe lungs are clear.\n## Similar-case evidence\n4 of 5 neighbours show pneumonia.\n"
        "## Impression\nNo acute abnormality."
    )
    assert _status(text, "pneumonia") == "not mentioned"


def test_findings_always_cover_every_name_with_a_valid_status() -> None:
    for text in ("", "Cardiomegaly.", "No effusion.", "Possible pneumonia."):
        summary = label_text(text)
        assert isinstance(summary, Summary) and summary.backend == "rules"
        assert list(summary.findings) == list(FINDINGS)
        assert set(summary.findings.values()) <= {"present", "absent", "uncertain", "not mentioned"}


def test_label_wording() -> None:
    assert label_text("The heart is enlarged. Small left pleural effusion.").label == (
        "Cardiomegaly with small left pleural effusion"
    )
    assert (
        label_text("Heart size normal. Lungs are clear. No effusion.").label == "No acute cardiopulmonary abnormality"
    )
    assert label_text("Possible right lower lobe pneumonia.").label == "Possible right pneumonia"
    assert label_text("Moderate right pneumothorax. Possible small left effusion.").label == (
        "Moderate right pneumothorax with possible small left pleural effusion"
    )
    assert label_text("").label == "No findings stated"
    assert label_text("Calcified granuloma. Lungs otherwise clear.").label.startswith("Calcified granuloma;")


def test_no_finding_rules() -> None:
    assert _status("Lungs are clear. No pneumothorax.", "no finding") == "present"
    assert _status("No pneumothorax. Cardiomegaly.", "no finding") == "absent"
    assert _status("Possible small effusion.", "no finding") == "absent"
    assert _status("Lungs are clear. Degenerative changes of the thoracic spine.", "no finding") == "absent"
    # devices are not pathology (CheXpert's convention)
    assert _status("Lungs are clear. Right PICC line in the SVC.", "no finding") == "present"
    # nothing said about the chest is not a normal study
    assert _status("hello", "no finding") == "not mentioned"
    assert _status("", "no finding") == "not mentioned"


def test_truncation_keeps_the_head_and_the_last_impression(caplog: pytest.LogCaptureFixture) -> None:
    head = "FINDINGS: Heart size is normal. No pleural effusion. " * 40_000
    text = head + "IMPRESSION: Large right pneumothorax."
    clipped, truncated = truncate_for_labeling(text)
    assert truncated and len(clipped) <= MAX_CHARS
    assert clipped.startswith("FINDINGS:") and clipped.rstrip().endswith("Large right pneumothorax.")
    assert truncate_for_labeling("short") == ("short", False)
    with caplog.at_level(logging.WARNING, logger="medrag.labels"):
        summary = label_text(text)
    assert summary.findings["pneumothorax"] == "present"
    assert any("read only" in r.message for r in caplog.records)
    # the caveat travels with the result, for the app and the CLI to show
    assert len(summary.notes) == 1 and f"of {len(text):,} characters" in summary.notes[0]
    assert label_text("IMPRESSION: Large right pneumothorax.").notes == ()


def test_megabyte_run_on_text_gives_a_valid_summary() -> None:
    summary = label_text("no " * 350_000)
    assert set(summary.findings) == set(FINDINGS)


def test_hostile_characters_do_not_change_the_reading() -> None:
    text = "\u202eNo\u200b pneumothorax.\x00 Small left\u200f pleural effusion.\x1b[0m \ud800"
    summary = label_text(text)
    assert summary.findings["pneumothorax"] == "absent"
    assert summary.findings["effusion"] == "present"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(text=st.text(max_size=300))
@example(text="DEVICE")  # devices alone describe the chest: "no finding", the rest not mentioned (not absent)
@example(text="Lungs clear.")
def test_any_text_gives_valid_findings(text: str) -> None:
    summary = label_text(text)
    assert set(summary.findings) == set(FINDINGS)
    assert set(summary.findings.values()) <= {"present", "absent", "uncertain", "not mentioned"}
    assert summary.label.strip()
    # "no finding" is present only when nothing abnormal is present or uncertain; what nobody named stays
    # "not mentioned" (a teaching tool must not call it "absent").
    others = [summary.findings[f] for f in FINDINGS if f not in ("no finding", "support devices")]
    assert (summary.findings["no finding"] == "present") <= all(s in ("absent", "not mentioned") for s in others)


def test_batch_and_threads_agree_with_single_calls() -> None:
    texts = ["Cardiomegaly.", "No effusion.", "Possible pneumonia.", "Lungs clear.", "Right rib fracture."] * 4
    single = [label_text(t) for t in texts]
    assert label_texts(texts) == single
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(label_text, texts)) == single


def test_rules_summariser_is_registered(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from medrag.config import Settings
    from medrag.reasoners.base import build_summariser, summariser_names

    assert "rules" in summariser_names()
    summariser = build_summariser("rules", Settings(data_dir=tmp_path))
    assert isinstance(summariser, RulesSummariser)
    assert (summariser.name, summariser.model) == ("rules", "medspacy-context")
    assert summariser.summarise("Cardiomegaly.").findings["cardiomegaly"] == "present"


def test_an_indeterminate_reading_is_not_labelled_normal() -> None:
    """The evidence reasoner's mixed-neighbour impression must not become 'No acute abnormality'."""
    mixed = label_text(
        "Indeterminate: the similar cases are mixed; the largest group is normal "
        "(weighted vote 46% of 5 cases). Verify against the image."
    )
    assert mixed.findings["no finding"] == "uncertain" and mixed.label == "Indeterminate; no definite abnormality"
    assert mixed.present() == []
    # a plain normal reading is still normal, and a hedged finding is still that finding
    assert label_text("Heart size normal. Lungs clear.").findings["no finding"] == "present"
    nodule = label_text("Indeterminate nodule in the right upper lobe.")
    assert nodule.findings["nodule/mass"] == "uncertain" and nodule.findings["no finding"] == "absent"


# --- the rules as data (medrag/labels/rules.toml) -----------------------------------------------


def _shipped_rules() -> dict[str, Any]:
    import tomllib
    from importlib import resources

    return tomllib.loads(resources.files("medrag.labels").joinpath("rules.toml").read_text(encoding="utf-8"))


def test_the_shipped_rules_load_and_cover_every_finding() -> None:
    from medrag.labels.rules import load_rules

    rules = load_rules()
    set_by_targets = {f for findings in rules.category_findings.values() for f in findings}
    assert set_by_targets == set(FINDINGS) - {"no finding"}
    assert "{HEART}" not in " ".join(p for p in rules.targets["CARDIOMEGALY"] if isinstance(p, str))
    assert "indication" in rules.skipped_sections and "impression" in rules.kept_sections


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["targets"]["EFFUSION"].append(r"\b(?:unclosed"), r"targets\.EFFUSION\[4\].*does not compile"),
        (lambda d: d["targets"]["EFFUSION"].append(r"\b{NOPE}\b"), r"unknown fragment \{NOPE\}"),
        (lambda d: d["categories"]["findings"].update(EFFUSION=["effusions"]), r"'effusions' is not a finding"),
        (lambda d: d["targets"].update(STRAY=[r"\bstray\b"]), r"targets\.STRAY.*exactly one of"),
        (lambda d: d["categories"]["abnormal_only"].append("GHOST"), r"GHOST.*no \[targets\] entry"),
        (lambda d: d["context"][0].update(direction="SIDEWAYS"), r"context\[0\]\.direction"),
        (lambda d: d["context"][0].update(max_scope=0), r"context\[0\]\.max_scope"),
        (lambda d: d["wording"]["display"].pop("edema"), r"display name \(missing: edema\)"),
        (lambda d: d.update(extras={}), r"extras: unknown table"),
    ],
)
def test_a_broken_rules_file_is_refused_naming_the_entry(edit, message: str) -> None:  # type: ignore[no-untyped-def]
    from medrag.errors import ConfigError
    from medrag.labels.rules import parse_rules

    data = _shipped_rules()
    edit(data)
    with pytest.raises(ConfigError, match=message):
        parse_rules(data)


def test_context_groups_with_the_same_key_become_one_rule_set() -> None:
    from medrag.labels.rules import parse_rules

    data = _shipped_rules()
    first = dict(data["context"][0])
    data["context"].append({**first, "patterns": [r"\bnowhere near\b"]})
    rules = parse_rules(data)
    group = rules.modifiers[0]
    assert (group.category, group.direction, group.max_scope) == (first["category"], first["direction"], None)
    assert group.patterns[-1] == r"\bnowhere near\b" and len(rules.modifiers) == len(
        parse_rules(_shipped_rules()).modifiers
    )


def test_the_labeler_never_imports_the_reasoners() -> None:
    import subprocess
    import sys

    code = "import sys, medrag.labels; print(sorted(m for m in sys.modules if m.startswith('medrag.reasoners')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_unknown_backend_names_list_the_registered_ones(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from medrag.config import Settings
    from medrag.errors import ConfigError
    from medrag.reasoners.base import build_reasoner, build_summariser, reasoner_names, summariser_names

    assert {"evidence"} <= set(reasoner_names()) and {"rules"} <= set(summariser_names())
    with pytest.raises(ConfigError, match=r"Unknown summariser 'nope'; choose one of: .*\brules\b"):
        build_summariser("nope", Settings(data_dir=tmp_path))
    with pytest.raises(ConfigError, match=r"Unknown reasoner 'nope'; choose one of: .*\bevidence\b"):
        build_reasoner("nope", Settings(data_dir=tmp_path))
