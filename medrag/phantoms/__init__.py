"""Synthetic chest X-ray phantoms with ground-truth findings, and the demo library built from them.

The phantoms are drawn procedurally (no third-party images): body outline, lungs with branching
vascular markings, posterior and anterior ribs, clavicles, spine, trachea, hila, heart, aortic
knob, diaphragm domes and a gastric bubble. Findings are drawn on top of the same anatomy:

* ``cardiomegaly``: a heart wider than half the thorax (CTR 0.58-0.68 instead of 0.40-0.48);
* ``effusion``: dependent fluid filling the costophrenic angle with a meniscus rising laterally,
  silhouetting the hemidiaphragm;
* ``pneumothorax``: an apicolateral air rim without lung markings outside a visible visceral
  pleural line;
* ``consolidation``: a patchy air-space opacity in one lobe with air bronchograms;
* ``nodule/mass``: a round opacity (mass when larger than 3 cm);
* ``edema``: bilateral perihilar haze (bat wing), indistinct vessels and Kerley B lines.

Patients differ in size, heart size, diaphragm, ribs, vessels, noise and exposure, but are positioned
like well-centred PA films (tilt within 1.5°, midline within 1.2 % of the width) with similar
technique, and every finding is drawn to be seen (nodules 2 cm or more, effusions and pneumothoraces
of at least 20 % of the lung, dense consolidations). Wider positioning and exposure ranges made
the set-up, not the findings, decide which demo cases looked alike (docs/encoder-experiments.md:
the original ranges gave same-label top-5 retrieval 0.33, chance 0.12).

Everything is deterministic per ``seed``: the anatomy depends on the seed only and each finding
on its own random stream, so ``generate_phantom({"effusion"}, 7)`` differs from
``generate_phantom(frozenset(), 7)`` only by the effusion. Images follow the PA convention:
the patient's right is on the image left.

Modules, one job each:

* :mod:`~medrag.phantoms.plan`: finding names, the patient's anatomy and each finding's plan;
* :mod:`~medrag.phantoms.geometry`: thorax coordinates and drawing primitives;
* :mod:`~medrag.phantoms.anatomy`: the normal chest, with its exact lung and heart masks;
* :mod:`~medrag.phantoms.findings`: the finding painters and where each finding lies;
* :mod:`~medrag.phantoms.render`: composing the image and the detector's response;
* :mod:`~medrag.phantoms.reports`: templated reports;
* :mod:`~medrag.phantoms.library`: the demo library's cases, labels and files.
"""

from __future__ import annotations

from medrag.phantoms.findings import finding_centres
from medrag.phantoms.library import CSV_COLUMNS, DEMO_PAIRS, build_demo_library, demo_mix, label_for
from medrag.phantoms.plan import FINDING_NAMES, FindingPlan, plan_findings
from medrag.phantoms.render import generate_phantom
from medrag.phantoms.reports import phantom_report

__all__ = [
    "CSV_COLUMNS",
    "DEMO_PAIRS",
    "FINDING_NAMES",
    "FindingPlan",
    "build_demo_library",
    "demo_mix",
    "finding_centres",
    "generate_phantom",
    "label_for",
    "phantom_report",
    "plan_findings",
]
