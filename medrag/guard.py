"""Domain control: is a question about chest imaging / medicine, is an image a chest radiograph?

``check_text`` combines a medical lexicon with MiniLM similarity to medical and non-medical
prototype sentences (embedded once per process and encoder). Without an encoder it decides on the
lexicon alone. ``check_image`` rejects images that are clearly not a chest radiograph: colour
photographs, text pages, blank images, extreme aspect ratios and photographs converted to grey.

Both return a :class:`GuardVerdict`; they never raise for a ``str`` or a ``CXRImage``.
``check_image`` lives in :mod:`medrag.guard_image` and is re-exported here, so callers import both from one place.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass

import numpy as np

from medrag.encoders.base import TextEncoder
from medrag.errors import BackendUnavailableError
from medrag.guard_image import (
    BLANK_STD,
    IMAGE_REFUSAL,
    MAX_ASPECT,
    MAX_COLOURFULNESS,
    MIN_SIDE,
    MIN_WEAK_CUES,
    ImageCues,
    check_image,
    image_cues,
)
from medrag.records import GuardVerdict

TEXT_REFUSAL = "MedRAG answers chest-imaging questions; ask about a radiograph, a finding or a diagnosis."

#: Characters of a question the check reads (longer questions are truncated for the check only).
CHECK_CHARS = 2_000
#: Questions longer than this are refused outright: no chest-imaging question is this long.
MAX_QUESTION_CHARS = 20_000

# --------------------------------------------------------------------------------------------
# Lexicon. Terms are lower-case words or phrases matched on word boundaries.
# --------------------------------------------------------------------------------------------

#: Chest-imaging and radiology terms: one is enough to call a question on-topic.
STRONG_TERMS: frozenset[str] = frozenset(
    """
    radiograph radiographs radiography radiographic radiology radiologist radiologists x-ray x-rays xray
    xrays cxr cxrs chest x-ray chest film pa view ap view lateral view frontal view decubitus
    pneumothorax pneumothoraces effusion effusions cardiomegaly consolidation consolidations atelectasis
    atelectatic opacity opacities opacification infiltrate infiltrates nodule nodules pneumonia pneumonias
    edema oedema emphysema emphysematous fracture fractures hilum hilar mediastinum mediastinal
    costophrenic hemidiaphragm diaphragm pleura pleural pulmonary lung lungs thorax thoracic trachea
    tracheal bronchus bronchi bronchial bronchiectasis rib ribs clavicle clavicles sternum scapula aorta
    aortic cardiac cardiothoracic tuberculosis tb covid covid-19 sars-cov-2 copd granuloma granulomas
    fibrosis interstitial airspace alveolar lobar lobe lobes lingula apical basilar bibasilar silhouette
    kerley pacemaker endotracheal nasogastric picc catheter sternotomy hyperinflation hyperinflated
    collapse ards bronchiolitis sarcoidosis mesothelioma asbestosis silicosis lymphadenopathy
    """.split()
) | frozenset(
    {
        "chest x-ray", "chest xray", "chest radiograph", "chest film", "chest ct", "ct scan", "pa view",
        "ap view", "lateral view", "frontal view", "air bronchogram", "pleural effusion", "lung cancer",
        "heart failure", "heart size", "tension pneumothorax", "silhouette sign", "support devices",
    }
)
#: General medical terms: on-topic unless the rest of the question says otherwise.
MEDICAL_TERMS: frozenset[str] = frozenset(
    """
    disease diseases diagnosis diagnoses diagnostic differential symptom symptoms sign signs patient
    patients clinical clinician doctor physician nurse hospital treatment therapy prognosis infection
    infections infectious cough coughing fever dyspnea dyspnoea breathless breathlessness shortness
    wheeze wheezing sputum hemoptysis cancer tumor tumour malignancy malignant benign metastasis
    metastases lesion lesions anatomy anatomical pathology medical medicine syndrome chronic acute
    injury trauma surgery surgical postoperative asthma bronchitis heart cardiology pulmonology
    oncology biopsy antibiotic antibiotics ventilator oxygen saturation mass masses scan imaging
    finding findings abnormality abnormal normal ct mri ultrasound echocardiogram ecg
    """.split()
) | frozenset({"shortness of breath", "chest pain", "blood pressure"})
#: Words whose medical sense needs support ("chest of drawers", "heart of gold").
AMBIGUOUS_TERMS: frozenset[str] = frozenset(
    {"chest", "shadow", "film", "films", "image", "images", "view", "line", "tube"}
)
#: Clearly off-topic words (food, sport, code, money, travel, entertainment, homework).
OFFTOPIC_TERMS: frozenset[str] = frozenset(
    """
    pizza pasta recipe recipes cook cooking bake baking restaurant restaurants cuisine dinner lunch
    breakfast cake soup wine beer cocktail football soccer basketball baseball tennis cricket golf nba
    nfl fifa olympics tournament goalkeeper python javascript java typescript rust golang programming
    code coding compile compiler algorithm sql database html css website software debug github bitcoin
    crypto cryptocurrency stock stocks shares invest investing investment mortgage loan tax taxes bank
    salary cheap flight flights hotel hotels travel vacation holiday tourist itinerary visa weather
    forecast movie movies netflix song songs lyrics music album concert joke jokes funny riddle poem
    poetry novel essay homework math maths equation calculus algebra president election politics
    capital car cars engine furniture drawers wardrobe sofa garden gardening dog dogs puppy gaming
    minecraft fortnite chess
    """.split()
) | frozenset({"chest of drawers", "treasure chest", "heart of gold", "write code", "source code"})

_ALL_TERMS = sorted(STRONG_TERMS | MEDICAL_TERMS | AMBIGUOUS_TERMS | OFFTOPIC_TERMS, key=len, reverse=True)
_TERM_RE = re.compile(r"(?<![\w-])(?:" + "|".join(re.escape(t) for t in _ALL_TERMS) + r")(?![\w-])")

# --------------------------------------------------------------------------------------------
# Prototype sentences for the MiniLM check.
# --------------------------------------------------------------------------------------------

MEDICAL_PROTOTYPES: tuple[str, ...] = (
    "Is there a pneumothorax on this chest X-ray?",
    "What does a pleural effusion look like on a radiograph?",
    "How is cardiomegaly measured on a chest film?",
    "Differential diagnosis of a right lower lobe opacity",
    "What are the radiographic signs of pneumonia?",
    "Explain the silhouette sign in chest radiology",
    "Is this lung nodule benign or malignant?",
    "Where should an endotracheal tube tip sit on a chest radiograph?",
    "What causes bilateral hilar lymphadenopathy?",
    "How do you tell atelectasis from consolidation?",
    "Signs of pulmonary edema and heart failure on imaging",
    "Rib fracture after a fall, what should I look for?",
    "What is emphysema and how does it appear on CT?",
    "Anatomy of the mediastinum and the heart borders",
    "Symptoms and treatment of tuberculosis",
    "Patient with cough, fever and shortness of breath",
    "What is the prognosis of lung cancer?",
    "COVID-19 pneumonia findings on chest imaging",
    "What does this radiology report mean?",
    "Is the heart size normal on this PA view?",
)
NONMEDICAL_PROTOTYPES: tuple[str, ...] = (
    "What is the best pizza restaurant in Rome?",
    "Give me a recipe for chocolate cake",
    "How do I cook pasta carbonara?",
    "Who won the football match last night?",
    "Explain the offside rule in soccer",
    "Write Python code to sort a list",
    "How do I fix this JavaScript bug?",
    "Write a SQL query that joins two tables",
    "Should I buy bitcoin or stocks this year?",
    "How do I get a cheaper mortgage?",
    "Plan a one-week holiday itinerary in Japan",
    "Cheap flights from London to New York",
    "What will the weather be like tomorrow?",
    "Recommend a good movie to watch tonight",
    "Write a poem about the sea",
    "Tell me a funny joke",
    "Solve this algebra homework equation for x",
    "Write an essay about the French revolution",
    "Who is the president of France?",
    "How do I assemble a chest of drawers?",
    "What are the lyrics of this song?",
    "How do I train my dog to sit?",
    "Best strategy for winning at chess",
    "How do I change the oil in my car?",
    "What is the capital of Australia?",
)

_PROTOTYPES: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
_PROTOTYPE_LOCK = threading.Lock()

#: Allowed when (medical similarity - non-medical similarity) + lexicon bonus exceeds this. On 34
#: on-topic and 33 off-topic development questions (MiniLM), on-topic values were >= 0.17 and off-topic
#: values <= -0.02: 0.05 sits between them.
TEXT_THRESHOLD = 0.05
_STRONG_BONUS = 0.12
_MEDICAL_BONUS = 0.06
_AMBIGUOUS_BONUS = 0.02
_OFFTOPIC_PENALTY = 0.10


@dataclass(frozen=True)
class LexiconHits:
    """Counts of lexicon terms found in a question."""

    strong: int
    medical: int
    ambiguous: int
    offtopic: int

    @property
    def bonus(self) -> float:
        """The lexicon's contribution to the text score (positive: medical)."""
        return (
            _STRONG_BONUS * min(self.strong, 2)
            + _MEDICAL_BONUS * min(self.medical, 2)
            + _AMBIGUOUS_BONUS * min(self.ambiguous, 2)
            - _OFFTOPIC_PENALTY * min(self.offtopic, 2)
        )


def _clean(text: str) -> str:
    # Control/format characters (NUL, ESC, RTL and zero-width marks, lone surrogates) become spaces.
    text = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in text)
    return " ".join(unicodedata.normalize("NFKC", text).split())


def lexicon_hits(text: str) -> LexiconHits:
    """Count strong, general-medical, ambiguous and off-topic terms in ``text`` (case-insensitive)."""
    strong = medical = ambiguous = offtopic = 0
    for match in _TERM_RE.finditer(text.lower()):
        term = match.group(0)
        if term in OFFTOPIC_TERMS:
            offtopic += 1
        elif term in STRONG_TERMS:
            strong += 1
        elif term in MEDICAL_TERMS:
            medical += 1
        else:
            ambiguous += 1
    return LexiconHits(strong, medical, ambiguous, offtopic)


def _prototype_vectors(encoder: TextEncoder) -> tuple[np.ndarray, np.ndarray]:
    key = (encoder.name, encoder.version)
    with _PROTOTYPE_LOCK:
        if key not in _PROTOTYPES:
            _PROTOTYPES[key] = (
                encoder.embed_text(list(MEDICAL_PROTOTYPES)),
                encoder.embed_text(list(NONMEDICAL_PROTOTYPES)),
            )
        return _PROTOTYPES[key]


def _top_mean(similarities: np.ndarray, k: int = 2) -> float:
    return float(np.sort(similarities)[-k:].mean())


def similarity_margin(question: str, encoder: TextEncoder) -> float:
    """Mean of the two best medical-prototype similarities minus the same for non-medical prototypes."""
    medical, other = _prototype_vectors(encoder)
    vector = encoder.embed_text([question])[0]
    return _top_mean(medical @ vector) - _top_mean(other @ vector)


def _calibrated(encoder: TextEncoder) -> TextEncoder:
    # The threshold was set on MiniLM similarities; another text encoder (a CLIP text tower) lives in
    # another space, so the guard uses MiniLM (offline, in its wheel) whatever the library indexes with.
    if encoder.name == "minilm":
        return encoder
    from medrag.encoders.text import MiniLMTextEncoder

    return MiniLMTextEncoder()


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def check_text(question: str, encoder: TextEncoder | None = None) -> GuardVerdict:
    """Is ``question`` a chest-imaging / medical question? ``score`` is in [0, 1] (0.5 = the threshold).

    With ``encoder`` the lexicon score is added to the MiniLM similarity margin (a non-MiniLM encoder is
    replaced by MiniLM, on which the threshold was set); without one, or if MiniLM is missing, the lexicon
    decides: at least one medical term and fewer off-topic than medical terms. Empty questions and questions over
    :data:`MAX_QUESTION_CHARS` characters are refused; longer than :data:`CHECK_CHARS` are checked on
    their first :data:`CHECK_CHARS` characters.
    """
    if not isinstance(question, str):
        question = str(question)
    if len(question) > MAX_QUESTION_CHARS:
        return GuardVerdict(
            False,
            f"The question is {len(question):,} characters long; send the question itself (at most "
            f"{MAX_QUESTION_CHARS:,} characters). {TEXT_REFUSAL}",
            0.0,
            "text",
        )
    text = _clean(question[: CHECK_CHARS * 2])[:CHECK_CHARS]
    if not text:
        return GuardVerdict(False, f"The question is empty. {TEXT_REFUSAL}", 0.0, "text")
    hits = lexicon_hits(text)
    margin = None
    if encoder is not None:
        try:
            margin = similarity_margin(text, _calibrated(encoder))
        except BackendUnavailableError:
            margin = None  # no MiniLM here: the lexicon decides
    if margin is None:
        medical = hits.strong + hits.medical + (0.5 * hits.ambiguous if hits.strong + hits.medical else 0.0)
        allowed = medical > 0 and hits.offtopic < medical
        score = _sigmoid(4.0 * hits.bonus) if (medical or hits.offtopic) else 0.0
        score = max(score, 0.51) if allowed else min(score, 0.49)
    else:
        value = margin + hits.bonus - TEXT_THRESHOLD
        allowed = value > 0.0
        score = _sigmoid(12.0 * value)
    if allowed:
        return GuardVerdict(True, "A chest-imaging or medical question.", round(score, 4), "text")
    return GuardVerdict(False, TEXT_REFUSAL, round(score, 4), "text")


__all__ = ["BLANK_STD", "CHECK_CHARS", "IMAGE_REFUSAL", "MAX_ASPECT", "MAX_COLOURFULNESS", "MAX_QUESTION_CHARS",
           "MIN_SIDE", "MIN_WEAK_CUES", "TEXT_REFUSAL", "TEXT_THRESHOLD", "ImageCues", "LexiconHits", "check_image",
           "check_text", "image_cues", "lexicon_hits", "similarity_margin"]
