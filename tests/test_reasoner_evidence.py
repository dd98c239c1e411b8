"""The offline evidence reasoner: sections, honesty, votes, streaming."""

from __future__ import annotations

from medrag.config import Settings
from medrag.reasoners import SECTIONS, ReasoningRequest, build_reasoner
from medrag.reasoners.evidence import EvidenceReasoner, label_votes
from medrag.records import Neighbour


def _n(rank: int, label: str, score: float, report: str = "") -> Neighbour:
    return Neighbour(case_id=f"c{rank}", score=score, rank=rank, label=label, dataset="demo", report=report)


NEIGHBOURS = (
    _n(1, "cardiomegaly", 0.9, "The heart is enlarged. No pleural effusion. Lungs are clear."),
    _n(2, "cardiomegaly", 0.8, "Cardiac silhouette is enlarged. Ribs intact."),
    _n(3, "normal", 0.5, "Normal heart size. No focal consolidation."),
)


def test_votes_are_similarity_weighted() -> None:
    votes = dict(label_votes(NEIGHBOURS))
    assert abs(sum(votes.values()) - 1) < 1e-6
    assert votes["cardiomegaly"] > 0.7 > votes["normal"]


def test_reasoning_has_every_section_in_order_and_says_it_is_retrieval_based() -> None:
    text = EvidenceReasoner().compose(ReasoningRequest(neighbours=NEIGHBOURS, measurements={"ctr": 0.61}))
    positions = [text.index(f"**{s}.**") for s in SECTIONS]
    assert positions == sorted(positions)
    assert "retrieval-based" in text and "not a diagnosis" in text
    assert "cardiothoracic ratio 0.61" in text
    impression = text.split("**Impression.**")[1]
    assert "cardiomegaly" in impression and "normal" not in impression
    # Report sentences are routed to their section.
    heart = text.split("**Heart and mediastinum.**")[1].split("**Bones and devices.**")[0]
    assert "heart is enlarged" in heart


def test_the_vote_line_is_its_own_paragraph_not_part_of_the_last_case() -> None:
    # Markdown reads a line straight after a list item as that item's continuation: the votes were shown
    # glued to the last similar case ("#5: normal (similarity 0.61) Similarity-weighted label votes: ...").
    lines = EvidenceReasoner().compose(ReasoningRequest(neighbours=NEIGHBOURS)).splitlines()
    vote = next(i for i, line in enumerate(lines) if line.startswith("Similarity-weighted label votes:"))
    assert lines[vote - 1] == "" and lines[vote - 2].startswith("- #3: normal")


def test_stream_joins_to_the_composed_text_in_many_pieces() -> None:
    reasoner = build_reasoner("evidence", Settings(data_dir="/tmp/medrag-unused"))
    request = ReasoningRequest(question="Is the heart enlarged?", neighbours=NEIGHBOURS)
    pieces = list(reasoner.stream(request))
    assert len(pieces) > 50
    assert "".join(pieces) == EvidenceReasoner().compose(request)


def test_no_neighbours_gives_an_honest_empty_impression() -> None:
    text = EvidenceReasoner().compose(ReasoningRequest())
    assert "No similar cases were found" in text
    assert "no similar-case evidence" in text


# ---------------------------------------------------------------- with an image reading
from medrag.consistency import contradictions  # noqa: E402
from medrag.labels import label_text  # noqa: E402
from medrag.pipeline import impression_of  # noqa: E402
from medrag.reading.base import DeviceMark, FindingRead, ImageReading  # noqa: E402


def _bedside_pneumonia() -> ImageReading:
    cnn = "medrag-cnn"
    return ImageReading(
        findings={
            "pneumonia": FindingRead("pneumonia", "present", 0.78, ("right lower zone",), source=cnn),
            "consolidation": FindingRead("consolidation", "uncertain", 0.41, ("right lower zone",), source=cnn),
            "effusion": FindingRead("effusion", "absent", 0.08, source=cnn),
            "pneumothorax": FindingRead("pneumothorax", "absent", 0.02, source=cnn),
            "cardiomegaly": FindingRead("cardiomegaly", "absent", 0.12, source=cnn),
            "support devices": FindingRead("support devices", "present", None, evidence="ECG leads", source="anatomy"),
        },
        view="AP", view_probability=0.93, ctr=0.58, ctr_reliable=False,
        zones={"right lower zone": {"mean": 0.6, "z": 2.4}, "left lower zone": {"mean": 0.5, "z": 0.4}},
        devices=(DeviceMark("ECG lead", 10, 10, 5, 5, 0.9), DeviceMark("line", 50, 60, 5, 90, 0.8)),
        readers=("anatomy", cnn),
    )


def test_a_reading_is_written_section_by_section_with_places_and_numbers() -> None:
    text = EvidenceReasoner().compose(ReasoningRequest(reading=_bedside_pneumonia(), neighbours=NEIGHBOURS))
    lungs = text.split("**Lungs.**")[1].split("**Pleura.**")[0]
    assert "right lower zone is 2.4 SD more opaque" in lungs
    assert "Pneumonia in the right lower zone (probability 0.78)" in lungs
    assert "case 1" not in lungs.lower()  # similar cases are quoted only in their own section
    assert "unreliable" in text.split("**Heart and mediastinum.**")[1].split("**Bones")[0]  # AP caveat
    assert "ECG lead" in text.split("**Bones and devices.**")[1].split("**Similar")[0]


def test_the_impression_agrees_with_every_statement_above_it() -> None:
    reading = _bedside_pneumonia()
    text = EvidenceReasoner().compose(ReasoningRequest(reading=reading, neighbours=NEIGHBOURS))
    summary = label_text(impression_of(text))
    for name, read in reading.findings.items():
        assert summary.findings[name] == read.status, (name, summary)
    assert contradictions(summary, text) == []


def test_a_question_gets_a_direct_answer_first() -> None:
    request = ReasoningRequest(question="Is there consolidation?", reading=_bedside_pneumonia(), neighbours=NEIGHBOURS)
    text = EvidenceReasoner().compose(request)
    answer = text.split("**Answer.**")[1].split("**Technical assessment.**")[0].strip()
    assert answer.startswith("Possibly: possible consolidation in the right lower zone")
    assert "Evidence for:" in answer and "Evidence against: classifier probability 0.41" in answer
    asked_no = ReasoningRequest(question="Is there a pneumothorax?", reading=_bedside_pneumonia())
    assert "No: no pneumothorax is seen" in EvidenceReasoner().compose(asked_no)


def test_a_normal_film_with_ecg_leads_reads_as_normal_and_its_table_agrees() -> None:
    from medrag.reading.combine import merge_readings

    anatomy = ImageReading(
        findings={"support devices": FindingRead("support devices", "present", None, (), "ecg electrode", "anatomy"),
                  "effusion": FindingRead("effusion", "absent", None, (), "both costophrenic angles sharp", "anatomy")},
        view="AP", devices=(DeviceMark("ecg electrode", 10, 10, 5, 5, 0.9),), readers=("anatomy",),
    )
    cnn = ImageReading(findings={
        "no finding": FindingRead("no finding", "present", 0.87, threshold=0.35),
        "consolidation": FindingRead("consolidation", "uncertain", 0.05, threshold=0.057),
        "effusion": FindingRead("effusion", "absent", 0.03, threshold=0.145),
    }, readers=("medrag-cnn",))
    reading = merge_readings([anatomy, cnn])
    text = EvidenceReasoner().compose(ReasoningRequest(reading=reading, neighbours=NEIGHBOURS))
    impression = impression_of(text)
    assert "No acute cardiopulmonary abnormality" in impression and "Possible consolidation" not in text
    summary = label_text(impression)
    assert summary.findings["no finding"] == "present" and summary.findings["support devices"] == "present"
    assert summary.findings["consolidation"] == "absent" and contradictions(summary, text) == []
    # Asked whether it is normal, the answer agrees with the impression: ECG leads are not an abnormality.
    asked = EvidenceReasoner().compose(ReasoningRequest(question="Is this film normal?", reading=reading))
    assert "Yes: the image readers see no acute abnormality" in asked.split("**Answer.**")[1].split("**Technical")[0]


def test_an_answer_inferred_for_a_class_the_classifier_cannot_read_says_so_and_gives_the_reason() -> None:
    from medrag.reading.combine import merge_readings

    cnn = ImageReading(findings={
        "consolidation": FindingRead("consolidation", "not mentioned", 0.06, (),
                                     "the classifier is not shown to beat chance for consolidation (held-out AUC "
                                     "0.50, 95% CI 0.36-0.65), so it does not call it", "medrag-cnn", 0.057),
        "pneumonia": FindingRead("pneumonia", "present", 0.7, ("right lower zone",), source="medrag-cnn"),
        "opacity": FindingRead("opacity", "absent", 0.1, source="medrag-cnn"),
    })
    request = ReasoningRequest(question="Is there consolidation?", reading=merge_readings([cnn]))
    answer = EvidenceReasoner().compose(request).split("**Answer.**")[1].split("**Technical")[0]
    assert answer.strip().startswith("Possibly: possible consolidation in the right lower zone")
    assert "Evidence for: possible because pneumonia is called." in answer
    assert "probability 0.06" not in answer  # a probability at chance is not offered as evidence
    assert "Caveat: the classifier is not shown to beat chance for consolidation" in answer


def test_devices_are_named_in_prose_with_the_side_of_the_patient_they_lie_on() -> None:
    from medrag.reading.base import Overlays
    from medrag.reasoners.reading_text import device_lines

    # Image left is the patient's right: the right lung's outline lies at x 10-40, the left lung's at 60-90.
    lungs = {"right lung": [(10.0, 20.0), (40.0, 20.0), (40.0, 80.0), (10.0, 80.0)],
             "left lung": [(60.0, 20.0), (90.0, 20.0), (90.0, 80.0), (60.0, 80.0)]}
    marks = (DeviceMark("ecg electrode", 70, 10, 4, 4, 0.9), DeviceMark("line or tube", 5, 30, 4, 40, 0.8),
             DeviceMark("line or tube", 20, 30, 4, 40, 0.8), DeviceMark("line or tube", 80, 30, 4, 40, 0.8))
    reading = ImageReading(devices=marks, overlays=Overlays(contours=lungs, devices=marks))
    assert device_lines(reading) == ["Devices seen: an ECG electrode on the left and 3 lines or tubes on both sides."]
    one_line = ImageReading(devices=marks[1:2], overlays=Overlays(contours=lungs))
    assert device_lines(one_line) == ["Devices seen: a line or tube on the right."]
    # Without lung outlines no side is guessed; without devices nothing is said.
    assert device_lines(ImageReading(devices=marks[:1])) == ["Devices seen: an ECG electrode."]
    assert device_lines(ImageReading()) == []
