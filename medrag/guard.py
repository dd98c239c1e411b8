"""Domain control: is a question about chest imaging / medicine, is an image a chest radiograph?

``check_text`` combines a medical lexicon with MiniLM similarity to medical and non-medical
prototype sentences (embedded once per process and encoder). Without an encoder it decides on the
lexicon alone. ``check_image`` rejects images that are clearly not a chest radiograph: colour
photographs, text pages, blank images, extreme aspect ratios and photographs converted to grey.

Both return a :class:`GuardVerdict`; they never raise for a ``str`` or a ``CXRImage``.
(About 440 lines, over the house ~400: most of it is the two lexicons and prototype sentences, data that
reads best beside the two checks that use it.)
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass

import numpy as np

from medrag.encoders.base import TextEncoder
from medrag.errors import BackendUnavailableError
from medrag.records import CXRImage, GuardVerdict

TEXT_REFUSAL = "MedRAG answers chest-imaging questions; ask about a radiograph, a finding or a diagnosis."
IMAGE_REFUSAL = "MedRAG analyses chest radiographs; upload a frontal chest X-ray (PNG, JPEG or DICOM)."

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


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------

#: Thresholds, each set beyond what 1,389 real frontal CXRs (../shared/data/cxr-real: NIH, Kermany,
#: Hannover, ieee8023) reach, with the measured CXR range in the comment. See :func:`image_cues`.
MAX_ASPECT = 1.9  # CXR max 1.35 (detectors are 35x43 cm: 1.23); text() 2.6, page() 2.0
MIN_SIDE = 32  # pixels
BLANK_STD = 0.03  # CXR min std 0.058
MAX_COLOURFULNESS = 20.0  # Hasler-Suesstrunk on 0-255 RGB; gray films 0, CXR JPEGs < 5; photos 38-135
#: Weak cues: an image is refused when it shows at least this many of them (CXRs: 0 for 93%, >= 3 for 0.1%).
MIN_WEAK_CUES = 3


@dataclass(frozen=True)
class ImageCues:
    """Measurements behind the image verdict (all on a grey copy in [0, 1])."""

    aspect: float
    std: float
    symmetry: float  # correlation with the left-right mirror (CXR median 0.74)
    mediastinum: float  # centre band minus lung bands, mid rows (CXR median 0.22)
    template: float  # correlation with a coarse frontal-chest template (CXR median 0.46)
    strong_edges: float  # fraction of pixels with Sobel magnitude > 0.2 (CXR p99.5 0.029)
    any_edges: float  # fraction with Sobel magnitude > 0.1 (CXR p99.5 0.136)
    roughness: float  # mean |Laplacian| / std at 256 px (CXR max 0.52)
    white: float  # fraction of pixels > 0.85
    dark: float  # fraction of pixels < 0.15
    median: float

    def weak(self) -> list[str]:
        """Names of the weak non-CXR cues this image shows."""
        cues = []
        if self.aspect > 1.45:
            cues.append("not a detector's proportions")
        if self.symmetry < 0.15:
            cues.append("no left-right symmetry")
        if self.mediastinum < 0.0:
            cues.append("no bright mediastinum between darker lungs")
        if self.template < 0.05:
            cues.append("no chest layout")
        if self.strong_edges > 0.035:
            cues.append("sharp photographic edges")
        if self.any_edges > 0.15:
            cues.append("dense edges")
        if self.roughness > 0.5:
            cues.append("fine texture")
        return cues

    def two_level(self) -> bool:
        """Almost only black and white pixels (CXR max 0.65 of pixels at the extremes): a page, drawing or mask."""
        return self.white + self.dark > 0.85

    def is_document(self) -> bool:
        """A white page with sparse dark strokes (text, a scanned document)."""
        return self.two_level() and self.white > 0.5 and self.strong_edges > 0.005


def _chest_template(n: int = 64) -> np.ndarray:
    # Body wall, two dark lungs, a bright mediastinum: the coarse layout of any frontal chest film.
    from scipy.ndimage import gaussian_filter

    y, x = np.mgrid[0:n, 0:n] / (n - 1)
    t = np.full((n, n), 0.55)
    t[(x < 0.07) | (x > 0.93)] = 0.15
    for cx in (0.3, 0.7):
        t[((x - cx) / 0.17) ** 2 + ((y - 0.47) / 0.33) ** 2 < 1] = 0.25
    t[(np.abs(x - 0.5) < 0.07) & (y > 0.1)] = 0.7
    return gaussian_filter(t, 2)


_TEMPLATE: np.ndarray | None = None


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    denominator = float(np.sqrt((a @ a) * (b @ b)))
    return float(a @ b / denominator) if denominator > 1e-12 else 0.0


def image_cues(pixels: np.ndarray) -> ImageCues:
    """Measure the cues :func:`check_image` decides on (pixels: 2-D, values in [0, 1])."""
    from skimage.filters import laplace, sobel
    from skimage.transform import resize

    global _TEMPLATE
    p = np.clip(np.nan_to_num(np.asarray(pixels, dtype=np.float32)), 0.0, 1.0)
    h, w = p.shape
    # Very large images are decimated first: the cues are coarse and resize's antialiasing is costly.
    step = max(1, max(h, w) // 1024)
    p = p[::step, ::step]
    square = resize(p, (256, 256), anti_aliasing=True)
    small = square.reshape(128, 2, 128, 2).mean(axis=(1, 3))
    tiny = square.reshape(64, 4, 64, 4).mean(axis=(1, 3))
    if _TEMPLATE is None:
        _TEMPLATE = _chest_template()
    rows = slice(38, 90)
    centre = float(small[rows, 58:70].mean())
    lungs = float(np.concatenate([small[rows, 25:45].ravel(), small[rows, 83:103].ravel()]).mean())
    edges = sobel(square)
    shape = (256, max(1, round(256 * w / h))) if h >= w else (max(1, round(256 * h / w)), 256)
    longer = resize(p, shape, anti_aliasing=True)
    return ImageCues(
        aspect=max(h, w) / max(1, min(h, w)),
        std=float(p.std()),
        symmetry=_correlation(small, small[:, ::-1]),
        mediastinum=centre - lungs,
        template=_correlation(tiny, _TEMPLATE),
        strong_edges=float((edges > 0.2).mean()),
        any_edges=float((edges > 0.1).mean()),
        roughness=float(np.abs(laplace(longer)).mean() / (longer.std() + 1e-6)),
        white=float((p > 0.85).mean()),
        dark=float((p < 0.15).mean()),
        median=float(np.median(p)),
    )


def _refuse(reason: str, score: float = 0.0) -> GuardVerdict:
    return GuardVerdict(False, f"{reason} {IMAGE_REFUSAL}", round(score, 4), "image")


def check_image(image: CXRImage) -> GuardVerdict:
    """Is ``image`` plausibly a frontal chest radiograph? Refuses clear non-CXRs with the reason.

    Decisive: fewer than :data:`MIN_SIDE` pixels a side, aspect ratio over :data:`MAX_ASPECT`, a blank
    (near-constant) image, ``meta["colourfulness"]`` over :data:`MAX_COLOURFULNESS`, a text page.
    Otherwise refused when it shows :data:`MIN_WEAK_CUES` or more weak cues (:meth:`ImageCues.weak`).
    ``score`` is the share of weak cues absent (1 = nothing unlike a CXR).
    """
    pixels = np.asarray(image.pixels)
    if pixels.ndim != 2 or pixels.size == 0:
        return _refuse(f"The image has shape {pixels.shape}, not a 2-D grey image.")
    h, w = pixels.shape
    if min(h, w) < MIN_SIDE:
        return _refuse(f"The image is {w}x{h} pixels, too small to be a radiograph.")
    if max(h, w) / min(h, w) > MAX_ASPECT:
        return _refuse(
            f"The image is {w}x{h} pixels (aspect {max(h, w) / min(h, w):.1f}:1); chest films are near square."
        )
    try:
        colour = float(image.meta.get("colourfulness", 0.0) or 0.0)
    except (TypeError, ValueError):
        colour = 0.0
    if colour > MAX_COLOURFULNESS:
        return _refuse(f"The image is a colour picture (colourfulness {colour:.0f}); radiographs are grey.")
    cues = image_cues(pixels)
    if cues.std < BLANK_STD:
        return _refuse("The image is blank (almost one grey level).")
    if cues.is_document():
        return _refuse("The image looks like a page of text or a document (white with sparse dark strokes).")
    if cues.two_level():
        return _refuse(
            "The image is almost only black and white (a drawing, mask or scan), not a radiograph's grey scale."
        )
    weak = cues.weak()
    score = 1.0 - len(weak) / 7.0
    if len(weak) >= MIN_WEAK_CUES:
        return _refuse(f"The image does not look like a chest radiograph ({', '.join(weak)}).", score)
    return GuardVerdict(True, "A grey image with a chest radiograph's layout.", round(score, 4), "image")
