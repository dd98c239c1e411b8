"""The offline evidence reasoner: sections, honesty, votes, streaming."""

from __future__ import annotations

from medrag.reasoners import SECTIONS, ReasoningRequest, build_reasoner
from medrag.reasoners.evidence import EvidenceReasoner, label_votes
from medrag.config import Settings
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
