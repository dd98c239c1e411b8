"""Rule-based findings labeler and one-line summariser (medspaCy target matcher + ConText).

``label_text(text)`` turns a radiology report or a reasoner's output into a :class:`Summary`:
a status for every name in :data:`medrag.records.FINDINGS` and a concise label such as
"Cardiomegaly with small left pleural effusion".

How a mention becomes a status:

* Target phrases (synonyms, plural and adjectival forms) are matched per finding.
* ConText modifiers tuned for radiology language mark each mention negated ("no", "without",
  "negative for", "free of", "resolved"...), uncertain ("may represent", "cannot exclude",
  "possible", "likely", "suggestive of", "versus"...), hypothetical ("if", "evaluate for",
  "recommend") or historical ("history of"). Pseudo-triggers ("no change in", "not only")
  stop "no"/"not" from negating what follows.
* Across mentions: present beats uncertain beats absent. Negated, hypothetical and historical
  mentions count as absent; never-mentioned findings are absent.
* Sections that do not describe this image (indication, history, comparison, technique,
  similar-case evidence, references) are skipped.
* "no finding" is present only when nothing abnormal is present or uncertain *and* the text
  says something about the chest (a negated finding or normal-study wording). Abnormalities
  outside the finding list (granuloma, scarring, degenerative change, hyperinflation...) also
  rule "no finding" out. Support devices do not.

Choices worth knowing: "borderline cardiomegaly" is present (a grade, as Open-i's indexers read it);
"probable"/"likely" are uncertain; "infectious process" is abnormal but is not labeled pneumonia
unless the word is used; a "nodular opacity/density" is both a nodule and an opacity.

Texts longer than :data:`MAX_CHARS` are truncated (head of the text plus the last impression
section) and a warning is logged. Texts are labeled in sentence-aligned chunks, which keeps
ConText's pairwise modifier pass cheap. On the 3,832 indexed Open-i reports the labeler reaches
macro F1 0.93 (:mod:`medrag.evaluation.labeler`).
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medrag.errors import BackendUnavailableError
from medrag.reasoners.base import BackendSpec, register_summariser
from medrag.records import FINDINGS, FindingStatus, Summary

if TYPE_CHECKING:
    from medrag.config import Settings

log = logging.getLogger(__name__)

#: Characters of text the labeler reads; longer texts are truncated (see :func:`truncate_for_labeling`).
MAX_CHARS = 20_000
#: Of :data:`MAX_CHARS`, how many are reserved for the last impression section when it lies beyond the head.
_IMPRESSION_CHARS = 4_000

# --------------------------------------------------------------------------------------------
# Target phrases. Keys are matcher categories; _CATEGORY_FINDINGS maps them onto FINDINGS.
# Patterns are case-insensitive regular expressions over the text (medspaCy RegexMatcher).
# --------------------------------------------------------------------------------------------

_SIZE = r"(?:(?:very |quite )?(?:mild(?:ly)?|moderate(?:ly)?|marked(?:ly)?|severe(?:ly)?|slight(?:ly)?|minimal(?:ly)?|massive(?:ly)?|borderline|significant(?:ly)?|stably|again|still|now)\s+)"
_HEART = r"(?:heart|cardiac|cardiac silhouette|cardiac shadow|cardiac contour|heart size|cardiac size|cardiomediastinal silhouette|heart shadow|cardiopericardial silhouette)"

_TARGETS: dict[str, list[str | list[dict[str, Any]]]] = {
    "CARDIOMEGALY": [
        r"\bcardiomegaly\b",
        r"\bcardiac (?:enlargement|megaly)\b",
        rf"\benlarge(?:d|ment of the) {_HEART}\b",
        rf"\benlarged (?:{_HEART})\b",
        rf"\b{_HEART} (?:is |are |appears |remains |is again |appear )?{_SIZE}*(?:enlarged|increased in size)\b",
        # heart word, then up to five words (no negation, no full stop), then an enlargement word
        rf"\b{_HEART}(?:\s+(?!(?:not|no|normal|without|upper|top|within)\b)[^\s.;]+){{0,5}}?\s+(?:enlarged|large|enlargement|borderline(?: in size| enlarged)?)\b",
        r"\bborderline (?:heart size|cardiac size|cardiomegaly|enlarge(?:d|ment of the) (?:heart|cardiac silhouette))\b",
        r"\b(?:heart|cardiac) enlargement\b",
        r"\benlargement of the (?:heart|cardiac silhouette|cardiac shadow|cardiomediastinal silhouette)\b",
        r"\bcardiomegal(?:y|ic)\b",
    ],
    "EFFUSION": [
        r"\b(?:pleural )?effusions?\b",
        r"\bpleural fluid\b",
        r"\bhemothorax\b",
        r"\bfluid (?:in|within|along|tracking along) the (?:major |minor |right |left )*(?:fissure|pleural space)s?\b",
    ],
    "PERICARDIAL": [r"\bpericardial effusions?\b", r"\b(?:joint|knee|subpulmonic pericardial) effusions?\b"],
    "PNEUMOTHORAX": [r"\bpneumothora(?:x|ces)\b", r"\bptx\b", r"\bpleural air(?: collections?)?\b"],
    "HYDROPNEUMOTHORAX": [r"\b(?:hydro|hemo|hydro-|hemo-)pneumothora(?:x|ces)\b"],
    "CONSOLIDATION": [
        r"\bconsolidat(?:ion|ions|ive|ed)\b(?: (?:opacity|opacities|changes?|process))?",
        r"\bair[- ]?bronchograms?\b",
    ],
    "OPACITY": [
        r"\bopaci(?:ty|ties|fication|fications|fied)\b",
        r"\bair[- ]?space (?:disease|process|opacit(?:y|ies)|filling)\b",
        r"\binfiltrat(?:e|es|ion|ions|ive)\b",
        r"\b(?:increased |hazy |patchy |streaky |ill-defined |focal |parenchymal |airspace |perihilar |basilar |bibasilar )+densit(?:y|ies)\b",
        r"\bdensit(?:y|ies) (?:in|at|within|projecting over|overlying) the (?:\w+ ){0,3}(?:lung|lobe|base|bases|lingula|apex|apices|hilum|perihilar region)s?\b",
        r"\bhaz(?:y|iness)\b",
    ],
    "ATELECTASIS": [
        r"\batelecta(?:sis|ses|tic)\b",
        r"\b(?:lobar |segmental |subsegmental |lung |lobe )?collapse\b",
        r"\bcollapsed (?:lung|lobe)\b",
    ],
    "EDEMA": [
        r"\b(?:pulmonary |interstitial |alveolar |airspace |perihilar )?o?edema\b",
        r"\b(?:pulmonary |vascular |pulmonary vascular |central vascular |venous )congestion\b",
        r"\bcongestive (?:heart )?failure\b",
        r"\bchf\b",
        r"\bfluid overload\b",
        r"\bkerley b?\s?lines\b",
        r"\bcephalization\b",
        r"\bvascular (?:engorgement|redistribution|indistinctness|prominence)\b",
        r"\bcongesti(?:on|ve)\b",
        r"\bpulmonary venous hypertension\b",
        r"\b(?:prominen(?:t|ce of the)|increased|engorged|indistinct) (?:central |pulmonary |lung |interstitial )*(?:vascular markings|vasculature|vascularity|vessels|vascular)\b",
        r"\b(?:vasculature|vascularity|vessels|vascular markings) (?:is |are |appears? |remains? )?(?:mildly |moderately )?(?:prominent|engorged|increased|indistinct)\b",
    ],
    "CHEST_WALL_EDEMA": [r"\b(?:soft tissue|subcutaneous|chest wall) (?:o?edema|swelling)\b"],
    "NODULE_MASS": [
        r"\b(?:fibro|reticulo|micro)?nodul(?:e|es|ar|arity|arities)\b",
        r"\bmass(?:es)?\b",
        r"\bmass[- ]like\b",
        r"\b(?:lung|pulmonary|bronchogenic) (?:cancer|carcinoma|neoplasm|tumou?r|malignancy)\b",
        r"\bmetasta(?:sis|ses|tic disease)\b",
        r"\bneoplasm\b",
    ],
    "NODULAR_OPACITY": [
        r"\bnodular (?:airspace )?(?:opacit(?:y|ies)|densit(?:y|ies)|infiltrates?)\b",
        r"\b(?:round|rounded|circular|oval|ovoid)(?: \w+)? (?:densit(?:y|ies)|opacit(?:y|ies))\b",
    ],
    "PNEUMONIA": [
        r"\b(?:broncho)?pneumoni(?:a|as|c)\b",
        r"\bpneumonitis\b",
    ],
    "FRACTURE": [
        r"\bfractur(?:e|es|ed)\b",
        r"\bfx\b",
        r"\bcompression (?:deformity|deformities)\b",
    ],
    "SUPPORT_DEVICES": [
        r"\b(?:pace ?maker|pacer|aicd|icd|defibrillator|cardioverter)s?\b",
        r"\b(?:central venous |venous |picc |central |swan[- ]ganz |dialysis |pulmonary artery |subclavian |jugular )(?:line|catheter)s?\b",
        r"\bcatheters?\b",
        r"\bpicc\b",
        r"\b(?:port-?a-?cath|mediport|power ?port|chest port|infusion port)\b",
        r"\b(?:endotracheal|et|tracheostomy|nasogastric|ng|orogastric|og|feeding|dobhoff|chest|enteric|gastric|thoracostomy) tubes?\b",
        r"\btracheostomy\b",
        r"\b(?:stent|stents|drain|drains|leads?|pacing wires?|electrodes?)\b",
        r"\b(?:prosthetic|replacement|mechanical|bioprosthetic) (?:valve|aortic valve|mitral valve)\b",
        r"\bvalve (?:replacement|prosthesis)\b",
        r"\b(?:sternotomy|median sternotomy) (?:wires?|sutures?)\b",
        r"\b(?:surgical )?clips?\b",
        r"\b(?:orthopedic |surgical |fixation |spinal fusion )hardware\b",
        r"\bloop recorder\b",
        r"\b(?:tubes?|devices?|generators?|stimulators?|coils?|wires?|ports?)\b",
        r"\blines? and tubes?\b|\btubes? and lines?\b",
        r"\bprosthetic (?:\w+ )?valves?\b",
        r"\b(?:lvad|ventricular assist device|impella|iabp|intra-aortic balloon pump)\b",
    ],
    "EMPHYSEMA": [
        r"\bemphysema(?:tous)?\b(?: changes?)?",
        r"\bcopd\b",
        r"\bchronic obstructive (?:pulmonary|lung|airway)s? disease\b",
        r"\bbullae\b",
        r"\bbullous (?:disease|change|changes|emphysema)\b",
        r"\bbulla\b",
    ],
    "OTHER_EMPHYSEMA": [r"\b(?:subcutaneous|mediastinal|soft tissue|interstitial) emphysema\b"],
    # Abnormal but outside FINDINGS: rules out "no finding" without a status of its own.
    "OTHER_ABNORMAL": [
        r"\bgranulom(?:a|as|ata|atous)\b",
        r"\bcalcifi(?:ed|cation|cations) (?:lymph )?(?:node|nodes|granulomas?|hilar|mediastinal)\b",
        r"\bscar(?:s|ring)?\b",
        r"\bfibro(?:sis|tic)\b",
        r"\bdegenerati(?:ve|on)\b",
        r"\bspondylo(?:sis|tic)\b",
        r"\bosteophyt(?:e|es|osis)\b",
        r"\b(?:dextro|levo)?scoliosis\b",
        r"\bkyphos(?:is|coliosis)\b",
        r"\bkyphotic\b",
        r"\btortu(?:ous|osity)\b",
        r"\bectati?c\b",
        r"\bectasia\b",
        r"\bunfold(?:ed|ing)\b",
        r"\b(?:aortic |vascular |atherosclerotic |arterial )?calcification\b",
        r"\batherosclero(?:sis|tic)\b",
        r"\b(?:hiatal|hiatus|diaphragmatic) hernia\b",
        r"\bhyper(?:inflat(?:ed|ion)|expan(?:ded|sion)|aerat(?:ed|ion)|lucen(?:t|cy))\b",
        r"\bhypo(?:inflat(?:ed|ion)|ventilat(?:ed|ion|ory))\b",
        r"\blow lung volumes?\b",
        r"\bblunt(?:ing|ed)\b",
        r"\bpleural (?:thickening|plaques?|calcifications?)\b",
        r"\beventration\b",
        r"\belevat(?:ed|ion) (?:of the )?(?:right |left )?(?:hemi)?diaphragm\b",
        r"\b(?:hemi)?diaphragm(?:s)? (?:is |are )?elevated\b",
        r"\bdeformit(?:y|ies)\b",
        r"\bbronchiectasis\b",
        r"\binterstitial (?:markings?|lung disease|disease|prominence|pattern|changes?|thickening)\b",
        r"\bpost[- ]?(?:operative|surgical)\b",
        r"\bsternotomy\b",
        r"\b(?:lobectomy|pneumonectomy|mastectomy|thoracotomy|cholecystectomy|cabg)\b",
        r"\b(?:widened|widening of the) mediastinum\b",
        r"\bmediastinal widening\b",
        r"\blymphadenopathy\b",
        r"\bhilar (?:enlargement|prominence|fullness|adenopathy)\b",
        r"\b(?:enlarged|prominent) (?:hila|hilum|hilar|pulmonary arter(?:y|ies))\b",
        r"\bosteopeni(?:a|c)\b",
        r"\bosteoporo(?:sis|tic)\b",
        r"\bcavit(?:y|ies|ation|ary)\b",
        r"\bcysts?\b",
        r"\bpneumoperitoneum\b",
        r"\bfree air\b",
        r"\bforeign bod(?:y|ies)\b",
        r"\bthickening\b",
        r"\bchronic (?:lung|interstitial|obstructive) (?:disease|changes)\b",
        r"\b(?:pulmonary|arterial) hypertension\b",
        r"\btuberculosis\b",
        r"\bsarcoid(?:osis)?\b",
        r"\baneurysm(?:al)?\b",
        r"\bpectus (?:excavatum|carinatum)\b",
        r"\bdislocat(?:ion|ed)\b",
        r"\bbreast implants?\b",
        r"\bhyperostosis\b",
        r"\barthriti(?:s|c)\b",
        r"\bsclero(?:sis|tic)\b",
        r"\bvolume loss\b",
        r"\b(?:mediastinal|tracheal) shift\b",
        r"\bcalcified\b",
        r"\bcrowding\b",
        r"\blow (?:lung )?volumes?\b",
        r"\b(?:decreased|diminished|reduced) (?:lung )?volumes?\b",
        r"\b(?:lung )?volumes are (?:low|decreased|diminished|reduced)\b",
        r"\bprominen(?:t|ce of the) (?:ascending |descending )?aort(?:a|ic)\b",
        r"\bspurr?(?:ing|s)\b",
        r"\bcurvature\b",
        r"\bfusion\b",
        r"\bbroken\b",
        r"\bpost-?traumatic\b",
        r"\blesions?\b",
        r"\bprosthes(?:is|es)\b",
        r"\bsuture material\b",
        r"\bsurgery\b",
        # infection named without "pneumonia": abnormal, but not labeled pneumonia (the word is what
        # radiologists use when they mean it, and what Open-i's indexers follow)
        r"\b(?:infectious|infective|inflammatory) (?:process|infiltrate|etiology|disease)\b",
        r"\b(?:pulmonary |lung |lobar )?infection\b",
    ],
    # Wording that asserts a normal study (evidence that the text describes the chest at all).
    "NORMAL": [
        [{"LOWER": {"IN": ["normal", "unremarkable", "clear", "wnl"]}}],
        r"\b(?:no acute|within normal limits)\b",
    ],
}

#: Which findings each matcher category sets (OTHER_*/NORMAL/PERICARDIAL set none).
_CATEGORY_FINDINGS: dict[str, tuple[str, ...]] = {
    "CARDIOMEGALY": ("cardiomegaly",),
    "EFFUSION": ("effusion",),
    "PNEUMOTHORAX": ("pneumothorax",),
    "HYDROPNEUMOTHORAX": ("pneumothorax", "effusion"),
    "CONSOLIDATION": ("consolidation",),
    "OPACITY": ("opacity",),
    "ATELECTASIS": ("atelectasis",),
    "EDEMA": ("edema",),
    "NODULE_MASS": ("nodule/mass",),
    "NODULAR_OPACITY": ("nodule/mass", "opacity"),
    "PNEUMONIA": ("pneumonia",),
    "FRACTURE": ("fracture",),
    "SUPPORT_DEVICES": ("support devices",),
    "EMPHYSEMA": ("emphysema",),
}
#: Categories that are abnormal but have no finding of their own.
_OTHER_ABNORMAL = frozenset({"OTHER_ABNORMAL", "OTHER_EMPHYSEMA", "PERICARDIAL", "CHEST_WALL_EDEMA"})

# --------------------------------------------------------------------------------------------
# ConText modifiers for radiology language: (literal or regex, category, direction).
# --------------------------------------------------------------------------------------------

_NEG, _UNC, _HYP, _HIST = "NEGATED_EXISTENCE", "POSSIBLE_EXISTENCE", "HYPOTHETICAL", "HISTORICAL"
_FWD, _BWD, _BI, _TERM, _PSEUDO = "FORWARD", "BACKWARD", "BIDIRECTIONAL", "TERMINATE", "PSEUDO"

_CONTEXT: list[tuple[str | list[dict[str, Any]], str, str, int | None]] = [
    # --- negation
    ([{"LOWER": {"IN": ["no", "not"]}}], _NEG, _FWD, None),
    (r"\bwithout\b", _NEG, _FWD, None),
    (r"\bnegative for\b", _NEG, _FWD, None),
    (r"\b(?:free|clear) of\b", _NEG, _FWD, None),
    (r"\b(?:absence|resolution|clearing|removal) of\b", _NEG, _FWD, None),
    (r"\b(?:nor|neither)\b", _NEG, _FWD, None),
    (r"\brather than\b", _NEG, _FWD, None),
    (r"\bno longer\b", _NEG, _BI, None),
    (r"\b(?:absent|ruled out)\b", _NEG, _BWD, None),
    (r"\bresolved\b", _NEG, _BI, 5),
    (r"\bwithin (?:normal limits|limits of normal|the normal range)\b", _NEG, _BWD, 6),
    (r"\b(?:is|are|appears?|remains?) (?:otherwise )?normal\b", _NEG, _BWD, 5),
    (r"\b(?:has|have) (?:been removed|cleared|resolved)\b", _NEG, _BWD, None),
    (r"\b(?:is |are |was |were |has been |have been |may |might |could |can )?(?:not|none) (?:be )?(?:well |clearly |definitely |as well )?(?:seen|identified|visualized|evident|present|appreciated|demonstrated|noted|detected|visible)\b", _NEG, _BWD, None),
    (r"\bunlikely\b", _NEG, _BI, 4),
    # --- uncertainty
    (r"\b(?:may|might|could|would)\b", _UNC, _FWD, None),
    (r"\bin the (?:appropriate|right) clinical (?:setting|context)\b", _UNC, _FWD, None),
    (r"\b(?:possible|possibly|probable|probably|likely|presumed|presumably|presumptive|potential|potentially)\b", _UNC, _FWD, None),
    (r"\bpossibility of\b", _UNC, _FWD, None),
    (r"\bsuggest(?:s|ive of|ing|ed)?\b", _UNC, _FWD, None),
    (r"\bsuspect(?:ed)?\b|\bsuspicious(?: for)?\b", _UNC, _FWD, None),
    (r"\bconcern(?:ing)? (?:for|of)\b|\bworrisome for\b", _UNC, _FWD, None),
    (r"\bquestion(?:able)?(?: of)?\b|\bquery\b", _UNC, _FWD, None),
    (r"\bthought to (?:be|represent)\b", _UNC, _FWD, None),
    (r"\bdifferential(?: diagnosis)?(?: includes?| considerations? includes?)?\b", _UNC, _FWD, None),
    (r"\bconsider(?:ed)?\b", _UNC, _FWD, None),
    (r"\bcorrelat(?:e|ion)(?: clinically)? for\b", _UNC, _FWD, None),
    (r"\b(?:versus|vs\.?)\b", _UNC, _BI, 2),
    (r"\b(?:equivocal|indeterminate)\b", _UNC, _BI, 4),
    (r"\bfavou?r(?:ed|s)?\b", _UNC, _FWD, None),
    (r"\b(?:cannot|can not|can't|could not|not) (?:be )?(?:entirely |completely |definitely )?(?:excluded|exclude|ruled out|rule out)\b", _UNC, _BI, None),
    (r"\bdifficult to (?:exclude|rule out)\b", _UNC, _BI, None),
    # --- hypothetical
    (r"\bif\b|\bshould\b|\bin case of\b", _HYP, _FWD, None),
    (r"\b(?:to |for )?(?:evaluate|assess|exclude|rule out|r/o|evaluation|assessment)(?: for| of)?\b", _HYP, _FWD, None),
    (r"\brecommend(?:ed|ation|s)?\b|\bfollow[- ]?up\b", _HYP, _FWD, None),
    # --- historical
    (r"\b(?:history of|h/o|hx of|known history of|past history of)\b", _HIST, _FWD, None),
    (r"\bstatus post\b|\bs/p\b", _HIST, _FWD, None),
    # --- terminators: end the scope of any modifier
    (r"\bbut\b|\bhowever\b|\balthough\b|\bexcept\b|\baside from\b|\bapart from\b|\bwith the exception of\b", "TERMINATE", _TERM, None),
    (r"\bthere (?:is|are)\b|;", "TERMINATE", _TERM, None),
    # --- pseudo-triggers: phrases that contain a trigger but do not modify
    (r"\bno (?:significant |interval |appreciable |substantial )?(?:change|changes|increase|decrease|improvement|worsening|progression|enlargement)(?: in)?\b", "PSEUDO", _PSEUDO, None),
    (r"\bnot (?:only|significantly changed|changed|increased|decreased|improved|worsened)\b", "PSEUDO", _PSEUDO, None),
    (r"\bno doubt\b|\bwithout doubt\b", "PSEUDO", _PSEUDO, None),
]

# --------------------------------------------------------------------------------------------
# Sections and truncation
# --------------------------------------------------------------------------------------------

#: Sections that describe something other than this image; their mentions are ignored.
SKIPPED_SECTIONS: frozenset[str] = frozenset(
    {
        "indication", "indications", "clinical indication", "history", "clinical history",
        "clinical information", "clinical details", "reason for exam", "reason for examination",
        "reason for study", "comparison", "comparisons", "technique", "procedure",
        "similar-case evidence", "similar case evidence", "similar cases", "references", "sources",
        "disclaimer",
    }
)
_KEPT_SECTIONS = (
    "findings", "impression", "impressions", "conclusion", "conclusions", "summary", "lungs", "pleura",
    "heart and mediastinum", "bones and devices", "technical assessment", "opinion", "report",
    "assessment", "interpretation", "recommendation", "recommendations", "note",
)
_HEADING_NAMES = sorted({*SKIPPED_SECTIONS, *_KEPT_SECTIONS}, key=len, reverse=True)
# A heading is a known section name at the start of a line or after a full stop, optionally in
# markdown (#, **), followed by a colon or the end of the line.
_HEADING_RE = re.compile(
    r"(?:^|(?<=[.\n]))[ \t>#*_-]*(?P<name>"
    + "|".join(re.escape(n).replace(r"\ ", r"\s+").replace(r"\-", r"[- ]?") for n in _HEADING_NAMES)
    + r")[ \t*_]*(?::|(?=\n)|$)",
    re.IGNORECASE | re.MULTILINE,
)
_IMPRESSION_RE = re.compile(r"(?:^|(?<=[.\n]))[ \t>#*_-]*(?:impressions?|conclusions?)[ \t*_]*(?::|(?=\n))", re.I | re.M)


def truncate_for_labeling(text: str, max_chars: int = MAX_CHARS) -> tuple[str, bool]:
    """Cut ``text`` to at most ``max_chars`` characters, keeping the head and the last impression.

    Returns ``(text, truncated)``. Reports put the conclusion last, so when an impression
    heading lies beyond the head, up to 4,000 characters from it replace the end of the head.
    """
    if len(text) <= max_chars:
        return text, False
    impression = None
    for match in _IMPRESSION_RE.finditer(text, max(0, max_chars - _IMPRESSION_CHARS)):
        impression = match
    if impression is not None and impression.start() > max_chars - _IMPRESSION_CHARS:
        tail = text[impression.start() : impression.start() + _IMPRESSION_CHARS]
        head = text[: max_chars - len(tail) - 2]
        return head + "\n\n" + tail, True
    return text[:max_chars], True


def _sanitise(text: str) -> str:
    # Control, format (RTL/zero-width) and lone-surrogate characters become spaces: spaCy and the
    # sentence splitter must never see them, and they carry no meaning for labeling.
    text = "".join(
        ch if ch in "\n\t" or unicodedata.category(ch)[0] != "C" else " " for ch in text
    )
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"\.{2,}", ".", text)  # "effusion.. Heart" must still end a sentence
    text = re.sub(r"\b(vs|e\.g|i\.e|approx)\.", r"\1", text, flags=re.I)  # not sentence ends
    return re.sub(r"[ \t]*\n[\s]*", "\n", text)


def strip_skipped_sections(text: str) -> str:
    """``text`` without the sections in :data:`SKIPPED_SECTIONS` (headings of kept sections dropped too)."""
    pieces: list[str] = []
    position, keep = 0, True
    for match in _HEADING_RE.finditer(text):
        if keep:
            pieces.append(text[position : match.start()])
        name = re.sub(r"[\s-]+", " ", match.group("name").lower())
        keep = name not in {re.sub(r"[\s-]+", " ", s) for s in SKIPPED_SECTIONS}
        position = match.end()
    if keep:
        pieces.append(text[position:])
    return "\n".join(p.strip() for p in pieces if p.strip())


# --------------------------------------------------------------------------------------------
# The medspaCy pipeline (built once per process)
# --------------------------------------------------------------------------------------------

_NLP: Any = None
# One lock guards both the lazy build and each call: the matchers and the sentence splitter keep
# per-call state, and labeling a report takes milliseconds.
_NLP_LOCK = threading.Lock()


def _build_nlp() -> Any:
    saved_filters = list(warnings.filters)
    try:
        import medspacy
        from medspacy.context import ConTextRule
        from medspacy.ner import TargetRule
    except Exception as exc:  # a broken spaCy/thinc build raises ValueError, not ImportError
        raise BackendUnavailableError(
            f"The rule labeler needs medspaCy, which failed to import ({type(exc).__name__}: {exc}). "
            "Reinstall the environment with `pip install -r requirements.txt`; medspaCy needs a spaCy/thinc "
            "build that matches the installed numpy."
        ) from exc
    finally:
        # medspaCy's matcher module silences every warning in the process on import; undo that.
        warnings.filters[:] = saved_filters
    nlp = medspacy.load(
        medspacy_enable=["medspacy_tokenizer", "medspacy_target_matcher", "medspacy_context"],
        load_rules=False,
    )
    # spaCy's rule sentencizer on . ! ? and line breaks: PyRuSH splits radiology text no better here
    # and takes half of the labeling time.
    nlp.add_pipe("sentencizer", first=True, config={"punct_chars": [".", "!", "?", "\n"]})
    nlp.get_pipe("medspacy_target_matcher").add(
        [
            TargetRule(literal=f"{category}:{i}", category=category, pattern=pattern)
            for category, patterns in _TARGETS.items()
            for i, pattern in enumerate(_merge_regexes(patterns))
        ]
    )
    grouped: dict[tuple[str, str, int | None], list[str | list[dict[str, Any]]]] = {}
    for pattern, category, direction, max_scope in _CONTEXT:
        grouped.setdefault((category, direction, max_scope), []).append(pattern)
    nlp.get_pipe("medspacy_context").add(
        [
            ConTextRule(
                literal=f"{category}:{direction}:{max_scope}:{i}",
                category=category,
                pattern=pattern,
                direction=direction,
                max_scope=max_scope,
            )
            for (category, direction, max_scope), patterns in grouped.items()
            for i, pattern in enumerate(_merge_regexes(patterns))
        ]
    )
    return nlp


def _merge_regexes(patterns: Sequence[str | list[dict[str, Any]]]) -> list[str | list[dict[str, Any]]]:
    # medspaCy's regex matcher rebuilds the doc text once per pattern: one alternation per rule
    # group keeps labeling fast. Token patterns (lists) stay separate.
    regexes = [p for p in patterns if isinstance(p, str)]
    merged: list[str | list[dict[str, Any]]] = [p for p in patterns if not isinstance(p, str)]
    if regexes:
        merged.append("|".join(f"(?:{r})" for r in regexes))
    return merged


def _get_nlp() -> Any:
    global _NLP
    if _NLP is None:
        with _NLP_LOCK:
            if _NLP is None:
                _NLP = _build_nlp()
    return _NLP


# --------------------------------------------------------------------------------------------
# From mentions to a Summary
# --------------------------------------------------------------------------------------------

_RANK: dict[str, int] = {"absent": 0, "uncertain": 1, "present": 2}

_DISPLAY: dict[str, str] = {
    "cardiomegaly": "cardiomegaly",
    "effusion": "pleural effusion",
    "pneumothorax": "pneumothorax",
    "consolidation": "consolidation",
    "opacity": "lung opacity",
    "atelectasis": "atelectasis",
    "edema": "pulmonary edema",
    "nodule/mass": "pulmonary nodule",
    "pneumonia": "pneumonia",
    "fracture": "fracture",
    "support devices": "support devices",
    "emphysema": "emphysema",
}
_SIZE_WORDS = ("trace", "tiny", "small", "moderate", "large", "mild", "minimal", "massive", "severe",
               "marked", "borderline", "extensive", "subtle", "patchy", "focal", "diffuse", "multifocal")
_SIDE_WORDS = {"left": "left", "right": "right", "bilateral": "bilateral", "bibasilar": "bibasilar",
               "basilar": "basilar", "left-sided": "left", "right-sided": "right"}
_SITE_WORDS = ("rib", "ribs", "clavicle", "clavicular", "vertebral", "sternal", "humeral", "scapular")
_MAX_LABEL_PARTS = 4


@dataclass
class _Mention:
    finding: str
    status: FindingStatus
    modifiers: tuple[str, ...]
    text: str


def _mention_modifiers(ent: Any) -> tuple[str, ...]:
    doc = ent.doc
    words = [t.lower_ for t in doc[max(ent.sent.start, ent.start - 4) : ent.end]]
    size = next((w for w in words if w in _SIZE_WORDS), None)
    side = next((_SIDE_WORDS[w] for w in words if w in _SIDE_WORDS), None)
    site = next((w.rstrip("s") for w in words if w in _SITE_WORDS), None)
    return tuple(w for w in (size, side, site) if w)


def _mentions(docs: Iterable[Any]) -> tuple[list[_Mention], list[str], bool]:
    """Finding mentions, other-abnormality mentions (present/uncertain) and whether the text describes the chest."""
    mentions: list[_Mention] = []
    others: list[str] = []
    described = False
    for ent in (ent for doc in docs for ent in doc.ents):
        category = ent.label_
        if category == "NORMAL":
            described = True
            continue
        if ent._.is_negated:
            described = True
            status: FindingStatus | None = "absent"
        elif ent._.is_hypothetical or ent._.is_historical or ent._.is_family:
            status = None
        elif ent._.is_uncertain:
            status = "uncertain"
        else:
            status = "present"
        if status is None:
            continue
        if category in _OTHER_ABNORMAL:
            if status != "absent":
                others.append(ent.text.lower())
                described = True
            continue
        for finding in _CATEGORY_FINDINGS.get(category, ()):
            mentions.append(_Mention(finding, status, _mention_modifiers(ent), ent.text.lower()))
            described = True
    return mentions, others, described


def _phrase(mention: _Mention) -> str:
    name = _DISPLAY[mention.finding]
    if mention.finding == "nodule/mass" and "mass" in mention.text:
        name = "mass"
    modifiers = mention.modifiers
    if mention.finding == "cardiomegaly":  # the heart has a size, not a side
        modifiers = tuple(m for m in modifiers if m in _SIZE_WORDS)
    return " ".join((*modifiers, name))


def _join(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _make_label(findings: dict[str, FindingStatus], best: dict[str, _Mention], others: list[str]) -> str:
    abnormal = [f for f in FINDINGS if f not in ("no finding", "support devices")]
    parts = [_phrase(best[f]) for f in abnormal if findings[f] == "present"]
    parts += ["possible " + _phrase(best[f]) for f in abnormal if findings[f] == "uncertain"]
    devices = "; support devices" if findings["support devices"] == "present" else ""
    if len(parts) > _MAX_LABEL_PARTS:
        extra = len(parts) - (_MAX_LABEL_PARTS - 1)
        parts = parts[: _MAX_LABEL_PARTS - 1] + [f"{extra} other findings"]
    if parts:
        head, rest = parts[0], parts[1:]
        return _capitalise(head + (" with " + _join(rest) if rest else "") + devices)
    if findings["no finding"] == "present":
        return "No acute cardiopulmonary abnormality" + devices
    if findings["no finding"] == "uncertain":
        return "Indeterminate; no definite abnormality" + devices
    if others:
        return _capitalise(others[0]) + "; no acute cardiopulmonary abnormality" + devices
    if devices:
        return "Support devices; no acute cardiopulmonary abnormality stated"
    return "No findings stated"


#: A reading that calls itself indeterminate: with nothing abnormal named, "normal" is not a finding of it.
_HEDGED_READING = re.compile(r"\b(?:indeterminate|equivocal|inconclusive)\b", re.IGNORECASE)


def _summarise(docs: Iterable[Any], notes: tuple[str, ...] = ()) -> Summary:
    docs = list(docs)
    mentions, others, described = _mentions(docs)
    findings: dict[str, FindingStatus] = {name: "absent" for name in FINDINGS}
    best: dict[str, _Mention] = {}
    for mention in mentions:
        current = best.get(mention.finding)
        if current is None or _RANK[mention.status] > _RANK[current.status]:
            best[mention.finding] = mention
            findings[mention.finding] = mention.status
    abnormal = any(
        status != "absent" for name, status in findings.items() if name not in ("no finding", "support devices")
    )
    if described and not abnormal and not others:
        hedged = any(_HEDGED_READING.search(doc.text) for doc in docs)
        findings["no finding"] = "uncertain" if hedged else "present"
    return Summary(label=_make_label(findings, best, others), findings=findings, backend="rules", notes=notes)


def _prepare(text: str) -> tuple[str, tuple[str, ...]]:
    """The text the labeler reads, and the caveats to show with its result."""
    if not isinstance(text, str):
        text = str(text)
    clipped, truncated = truncate_for_labeling(text)
    if not truncated:
        return strip_skipped_sections(_sanitise(clipped)), ()
    log.warning("Labeler read only %d of %d characters (head and last impression).", len(clipped), len(text))
    note = (
        f"The labeler read {len(clipped):,} of {len(text):,} characters (the start and the last impression); "
        "findings described only in the part it skipped are not in the table."
    )
    return strip_skipped_sections(_sanitise(clipped)), (note,)


_CHUNK_CHARS = 600
_SENTENCE_END = re.compile(r"(?<=[.!?\n])\s+")


def _chunks(text: str, size: int = _CHUNK_CHARS) -> list[str]:
    # ConText compares every pair of modifiers in a doc (quadratic), but its scopes never cross a
    # sentence: labeling sentence-aligned chunks gives the same result and bounds the cost.
    chunks: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(text):
        while len(sentence) > size:  # a run-on "sentence": cut at the last space before the limit
            cut = sentence.rfind(" ", 0, size)
            cut = cut if cut > 0 else size
            if current:
                chunks.append(current)
                current = ""
            chunks.append(sentence[:cut])
            sentence = sentence[cut:].lstrip()
        if current and len(current) + len(sentence) + 1 > size:
            chunks.append(current)
            current = ""
        current = f"{current} {sentence}" if current else sentence
    if current.strip():
        chunks.append(current)
    return chunks


def label_text(text: str) -> Summary:
    """Label a report or reasoning text: a status for every finding in FINDINGS plus a one-line label.

    Never raises for any ``str`` (texts over :data:`MAX_CHARS` are truncated, with a logged warning);
    raises :class:`BackendUnavailableError` only when medspaCy itself cannot be loaded.
    """
    return label_texts([text])[0]


def label_texts(texts: Iterable[str], batch_size: int = 64) -> list[Summary]:
    """:func:`label_text` for many texts at once (one pipeline pass over all their chunks)."""
    nlp = _get_nlp()
    owners: list[int] = []
    pieces: list[str] = []
    notes: list[tuple[str, ...]] = []
    for index, text in enumerate(texts):
        prepared, caveats = _prepare(text)
        notes.append(caveats)
        for chunk in _chunks(prepared):
            owners.append(index)
            pieces.append(chunk)
    docs: list[list[Any]] = [[] for _ in notes]
    with _NLP_LOCK:
        for owner, doc in zip(owners, nlp.pipe(pieces, batch_size=batch_size)):
            docs[owner].append(doc)
        return [_summarise(group, caveats) for group, caveats in zip(docs, notes)]


class RulesSummariser:
    """The offline summariser: medspaCy target phrases + ConText rules (see :func:`label_text`)."""

    name = "rules"
    model = "medspacy-context"

    def summarise(self, text: str) -> Summary:
        """A one-line label and a status for every finding."""
        return label_text(text)


def _factory(settings: "Settings") -> RulesSummariser:
    _get_nlp()  # fail here, with the fix in the message, rather than mid-analysis
    return RulesSummariser()


register_summariser(
    BackendSpec(
        name="rules",
        factory=_factory,
        description="Rule-based labeler: medspaCy target phrases with radiology ConText negation/uncertainty",
        offline=True,
    )
)
