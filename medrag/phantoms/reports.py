"""Templated radiology reports for phantoms: the wording varies with the seed, the facts follow the plan."""

from __future__ import annotations

import numpy as np

from medrag.phantoms.plan import plan_findings

_SIDE = {-1: "right", 1: "left", 2: "bilateral"}


def _size_word(fraction: float) -> str:
    return "small" if fraction < 0.22 else ("moderate" if fraction < 0.33 else "large")


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def phantom_report(findings: frozenset[str], seed: int) -> str:
    """A templated radiology report for the phantom ``generate_phantom(findings, seed)``.

    "FINDINGS:" then "IMPRESSION:"; wording varies with ``seed``; sides and sizes match the image;
    key findings that are absent are negated (e.g. "No pleural effusion or pneumothorax.").
    """
    plan = plan_findings(findings, seed)
    rng = np.random.default_rng([seed, 3])
    found = plan.findings
    lines: list[str] = [_pick(rng, ["PA view of the chest.", "Frontal (PA) chest radiograph.",
                                    "Single PA view of the chest."])]
    impression: list[str] = []

    if "cardiomegaly" in found:
        lines.append(_pick(rng, [
            f"The heart is enlarged (cardiothoracic ratio about {plan.ctr:.2f}).",
            f"Cardiomegaly, with a cardiothoracic ratio of approximately {plan.ctr:.2f}.",
            "The cardiac silhouette is enlarged.",
        ]))
        impression.append("Cardiomegaly")
    else:
        lines.append(_pick(rng, [
            "The heart size is normal.", "Normal cardiac size.",
            "The cardiomediastinal silhouette is within normal limits.",
        ]))

    if "edema" in found:
        lines.append(_pick(rng, [
            "Bilateral perihilar airspace haziness with indistinct pulmonary vessels and Kerley B lines, "
            "consistent with pulmonary edema.",
            "Perihilar haze in a bat-wing distribution, vascular indistinctness and septal (Kerley B) lines: "
            "interstitial and alveolar pulmonary edema.",
        ]))
        impression.append("Pulmonary edema")

    if "consolidation" in found:
        zone = plan.consolidation_zone
        side = _SIDE[plan.consolidation_side]
        where = "lingula" if zone == "lingula" else (
            f"{side} middle lobe" if zone == "mid" else f"{side} {zone} lobe")
        lines.append(_pick(rng, [
            f"Patchy airspace consolidation in the {where} with air bronchograms.",
            f"There is a focal consolidation in the {where}; air bronchograms are seen.",
            f"Airspace opacity in the {where}, with air bronchograms, compatible with consolidation.",
        ]))
        impression.append(f"Consolidation in the {where}")

    if "nodule/mass" in found:
        kind = "mass" if plan.nodule_mm > 30 else "nodule"
        side = _SIDE[plan.nodule_side]
        size_cm = plan.nodule_mm / 10.0
        lines.append(_pick(rng, [
            f"A {size_cm:.1f} cm round {kind} projects over the {side} {plan.nodule_zone} zone.",
            f"There is a well-circumscribed {size_cm:.1f} cm pulmonary {kind} in the {side} "
            f"{plan.nodule_zone} zone.",
        ]))
        impression.append(f"{size_cm:.1f} cm {side} {plan.nodule_zone} zone pulmonary {kind}; "
                          "CT recommended for further characterisation")

    if "effusion" in found:
        size = _size_word(plan.effusion_size)
        if plan.effusion_side == 2:
            text = f"{size.capitalize()} bilateral pleural effusions"
            lines.append(f"{text} with blunting of both costophrenic angles.")
        else:
            side = _SIDE[plan.effusion_side]
            text = f"{size.capitalize()} {side} pleural effusion"
            lines.append(_pick(rng, [
                f"{text} with blunting of the {side} costophrenic angle and a meniscus.",
                f"Blunting of the {side} costophrenic angle with a meniscus, in keeping with a "
                f"{size} {side} pleural effusion.",
            ]))
        impression.append(text)

    if "pneumothorax" in found:
        side = _SIDE[plan.pneumothorax_side]
        size = _size_word(plan.pneumothorax_size)
        lines.append(_pick(rng, [
            f"A visceral pleural line is seen in the {side} apex and lateral hemithorax with no lung "
            f"markings beyond it: {size} {side} pneumothorax.",
            f"{size.capitalize()} {side} pneumothorax, with a visible pleural edge and absent lung markings "
            "peripherally.",
        ]))
        impression.append(f"{size.capitalize()} {side} pneumothorax")

    # Negations for absent key findings.
    lung_findings = {"edema", "consolidation", "nodule/mass"} & found
    if not lung_findings and "pneumothorax" not in found:
        lines.append(_pick(rng, ["The lungs are clear.", "The lungs are well expanded and clear.",
                                 "Clear lungs."]))
    if "consolidation" not in found and "edema" not in found:
        lines.append(_pick(rng, ["No focal consolidation.", "No focal airspace consolidation."]))
    if "edema" not in found:
        lines.append(_pick(rng, ["No pulmonary edema.", "No signs of pulmonary edema."]))
    if "nodule/mass" not in found:
        lines.append(_pick(rng, ["No pulmonary nodule or mass.", "No suspicious nodule or mass."]))
    absent_pleural = [name for name in ("effusion", "pneumothorax") if name not in found]
    if absent_pleural == ["effusion", "pneumothorax"]:
        lines.append(_pick(rng, ["No pleural effusion or pneumothorax.",
                                 "No pneumothorax or pleural effusion."]))
    elif absent_pleural == ["effusion"]:
        lines.append("No pleural effusion.")
    elif absent_pleural == ["pneumothorax"]:
        lines.append("No pneumothorax.")
    lines.append(_pick(rng, ["The osseous structures are intact.", "No acute osseous abnormality.",
                             "Bones are unremarkable."]))

    if impression:
        impression_text = ". ".join(impression) + "."
    else:
        impression_text = _pick(rng, ["No acute cardiopulmonary abnormality.",
                                      "Normal chest radiograph.", "No acute cardiopulmonary process."])
    return "FINDINGS: " + " ".join(lines) + "\nIMPRESSION: " + impression_text


__all__ = ["phantom_report"]
