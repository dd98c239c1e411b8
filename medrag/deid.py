"""DICOM de-identification: safe display tags and a scrubbed copy of a dataset.

Two independent defences:

* :func:`deidentify` is an *allow-list*: it returns only technical, non-identifying tags
  (modality, view, geometry, exposure, windowing...). Whatever a file carries elsewhere never
  reaches the returned dict, so it is what the app stores and shows.
* :func:`scrub_dataset` is a *remove-list* after DICOM PS3.15 Annex E (Basic Application Level
  Confidentiality Profile, a practical subset): identifying attributes are removed or blanked,
  every person name (PN) and date/time (DA, DT, TM) anywhere in the tree is blanked, UIDs are
  replaced by deterministic hashed UIDs, private tags and overlay/curve groups are dropped.

Neither function touches pixels: text burned into the image is only *flagged*
(:func:`burned_in_annotation`).
"""

from __future__ import annotations

import copy
import hashlib
import re

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

#: Tags safe to show: technical, non-identifying. Keyword -> display name.
SAFE_TAGS: dict[str, str] = {
    "Modality": "Modality",
    "SOPClassUID": "SOP class",
    "BodyPartExamined": "Body part",
    "ViewPosition": "View",
    "PatientOrientation": "Patient orientation",
    "ImageLaterality": "Image laterality",
    "Laterality": "Laterality",
    "PresentationIntentType": "Presentation intent",
    "PhotometricInterpretation": "Photometric interpretation",
    "SamplesPerPixel": "Samples per pixel",
    "Rows": "Rows",
    "Columns": "Columns",
    "NumberOfFrames": "Frames",
    "BitsAllocated": "Bits allocated",
    "BitsStored": "Bits stored",
    "PixelRepresentation": "Pixel representation",
    "PixelSpacing": "Pixel spacing (mm)",
    "ImagerPixelSpacing": "Imager pixel spacing (mm)",
    "RescaleSlope": "Rescale slope",
    "RescaleIntercept": "Rescale intercept",
    "WindowCenter": "Window centre",
    "WindowWidth": "Window width",
    "VOILUTFunction": "VOI LUT function",
    "KVP": "kVp",
    "ExposureTime": "Exposure time (ms)",
    "XRayTubeCurrent": "Tube current (mA)",
    "Exposure": "Exposure (mAs)",
    "DistanceSourceToDetector": "Source-detector distance (mm)",
    "Manufacturer": "Manufacturer",
    "BurnedInAnnotation": "Burned-in annotation",
    "PatientSex": "Sex",
    "PatientAge": "Age",
}

# Attributes removed outright (PS3.15 Table E.1-1 "X" and most "X/Z/D" actions).
_REMOVE: frozenset[str] = frozenset(
    {
        "AccessionNumber", "AcquisitionDateTime", "AdditionalPatientHistory", "AdmissionID",
        "AdmittingDiagnosesDescription", "Allergies", "Arbitrary", "AuthorObserverSequence",
        "BranchOfService", "ConsultingPhysicianName", "ContentCreatorName", "ContributionDescription",
        "CountryOfResidence", "CurrentPatientLocation", "CustodialOrganizationSequence",
        "DataSetTrailingPadding", "DerivationDescription", "DeviceSerialNumber", "DeviceUID",
        "DigitalSignaturesSequence", "EthnicGroup", "FrameComments", "IconImageSequence",
        "IdentifyingComments", "ImageComments", "InstitutionAddress", "InstitutionCodeSequence",
        "InstitutionName", "InstitutionalDepartmentName", "InsurancePlanIdentification",
        "IntendedRecipientsOfResultsIdentificationSequence", "InterpretationApproverSequence",
        "InterpretationAuthor", "InterpretationRecorder", "InterpretationTranscriber",
        "IssuerOfAdmissionID", "IssuerOfPatientID", "MedicalAlerts", "MedicalRecordLocator",
        "MilitaryRank", "ModifiedAttributesSequence", "NameOfPhysiciansReadingStudy",
        "OperatorIdentificationSequence", "OperatorsName", "OriginalAttributesSequence",
        "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientAddress",
        "PatientAge", "PatientBirthName", "PatientBirthTime", "PatientComments",
        "PatientInsurancePlanCodeSequence", "PatientMotherBirthName", "PatientReligiousPreference",
        "PatientSize", "PatientState", "PatientTelephoneNumbers", "PatientWeight",
        "PerformedLocation", "PerformedProcedureStepDescription", "PerformedProcedureStepID",
        "PerformingPhysicianIdentificationSequence", "PerformingPhysicianName",
        "PersonIdentificationCodeSequence", "PersonName", "PhysicianApprovingInterpretation",
        "PhysiciansOfRecord", "PhysiciansOfRecordIdentificationSequence",
        "PhysiciansReadingStudyIdentificationSequence", "ProtocolName", "ReasonForStudy",
        "ReferencedPatientAliasSequence", "ReferencedPatientSequence",
        "ReferringPhysicianAddress", "ReferringPhysicianIdentificationSequence",
        "ReferringPhysicianTelephoneNumbers", "RegionOfResidence", "RequestAttributesSequence",
        "RequestedProcedureDescription", "RequestedProcedureID", "RequestingPhysician",
        "RequestingService", "ResponsibleOrganization", "ResponsiblePerson",
        "ScheduledPerformingPhysicianName", "ScheduledProcedureStepDescription",
        "ScheduledProcedureStepID", "SeriesDescription", "SmokingStatus", "SpecialNeeds",
        "StationName", "StudyComments", "StudyDescription", "StudyIDIssuer", "TextComments",
        "TextString", "VerifyingObserverName", "VerifyingObserverSequence", "VisitComments",
    }
)

# Type-2 attributes that must stay present but empty (PS3.15 "Z").
_BLANK: frozenset[str] = frozenset(
    {
        "PatientName", "PatientID", "PatientBirthDate", "ReferringPhysicianName", "StudyID",
        "StudyDate", "StudyTime", "SeriesDate", "SeriesTime", "AcquisitionDate",
        "AcquisitionTime", "ContentDate", "ContentTime", "InstanceCreationDate",
        "InstanceCreationTime",
    }
)

# UIDs that link a file to a patient's other studies: replaced, consistently.
_REPLACE_UID: frozenset[str] = frozenset(
    {
        "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID",
        "ReferencedSOPInstanceUID", "MediaStorageSOPInstanceUID", "InstanceCreatorUID",
        "IrradiationEventUID", "SynchronizationFrameOfReferenceUID",
    }
)

_DATE_TIME_VRS = frozenset({"DA", "DT", "TM"})
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_MAX_VALUE_CHARS = 64


def _display_value(elem: DataElement) -> str:
    value = elem.value
    if elem.keyword == "SOPClassUID":
        text = getattr(value, "name", "") or str(value)
    elif isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        text = ", ".join(str(v) for v in value)
    elif isinstance(value, bytes):
        return ""
    else:
        text = str(value)
    text = _CONTROL_CHARS.sub(" ", text).strip()
    return text[:_MAX_VALUE_CHARS]


def _safe_age(text: str) -> str:
    """'045Y' -> '45Y'; ages above 89 years are reported as '90+Y' (HIPAA Safe Harbor)."""
    match = re.fullmatch(r"0*(\d{1,3})\s*([DWMY])", text.upper())
    if not match:
        return ""
    number, unit = int(match.group(1)), match.group(2)
    if unit == "Y" and number > 89:
        return "90+Y"
    return f"{number}{unit}"


def deidentify(ds: Dataset) -> dict[str, str]:
    """Safe, de-identified display tags of ``ds`` as ``{display name: text}``.

    Only the allow-listed technical tags in :data:`SAFE_TAGS` are read (plus the transfer
    syntax); names, IDs, dates, institutions, free text and private tags never appear.
    Patient age is normalised and capped at ``90+Y``; sex is kept only as M/F/O.
    """
    out: dict[str, str] = {}
    for keyword, label in SAFE_TAGS.items():
        if keyword not in ds:
            continue
        elem = ds[keyword]
        if elem.value is None or elem.VR == "SQ":
            continue
        text = _display_value(elem)
        if keyword == "PatientAge":
            text = _safe_age(text)
        elif keyword == "PatientSex":
            text = text.upper() if text.upper() in {"M", "F", "O"} else ""
        if text:
            out[label] = text
    file_meta = getattr(ds, "file_meta", None)
    ts = getattr(file_meta, "TransferSyntaxUID", None) if file_meta is not None else None
    if ts:
        out["Transfer syntax"] = getattr(ts, "name", "") or str(ts)
    return out


def _replacement_uid(uid: str) -> str:
    # Hashing the original keeps links between files of one study without revealing the UID.
    # A 2.25 UID (a 128-bit number, PS3.5 B.2) derived from the original.
    digest = hashlib.sha256(f"medrag-deid:{uid}".encode()).digest()[:16]
    return f"2.25.{int.from_bytes(digest, 'big')}"


def _scrub_element(ds: Dataset, elem: DataElement) -> None:
    keyword = elem.keyword
    if elem.tag.is_private or (0x6000 <= elem.tag.group <= 0x60FF) or (0x5000 <= elem.tag.group <= 0x50FF):
        del ds[elem.tag]
    elif keyword in _REMOVE:
        del ds[elem.tag]
    elif keyword in _REPLACE_UID and elem.value:
        if elem.VM > 1:
            elem.value = [_replacement_uid(v) for v in elem.value]
        else:
            elem.value = _replacement_uid(elem.value)
    elif keyword in _BLANK or elem.VR == "PN" or elem.VR in _DATE_TIME_VRS:
        elem.value = None if elem.VR == "SQ" else ""


def scrub_dataset(ds: Dataset) -> Dataset:
    """A de-identified deep copy of ``ds`` (PS3.15 basic profile, practical subset).

    Removes identifying attributes and all private, overlay (60xx) and curve (50xx) elements;
    blanks names (every PN), dates and times (every DA/DT/TM), patient ID and study ID;
    replaces study/series/instance UIDs by deterministic hashed UIDs; recurses into sequences;
    sets PatientIdentityRemoved = YES. Pixel data are kept as they are: check
    :func:`burned_in_annotation` before sharing.
    """
    out = copy.deepcopy(ds)
    out.remove_private_tags()

    def visit(dataset: Dataset, elem: DataElement) -> None:
        _scrub_element(dataset, elem)

    # walk() tolerates deletion of the element being visited (it iterates over a tag list).
    out.walk(visit, recursive=True)
    file_meta = getattr(out, "file_meta", None)
    if file_meta is not None:
        if "MediaStorageSOPInstanceUID" in file_meta:
            file_meta.MediaStorageSOPInstanceUID = _replacement_uid(file_meta.MediaStorageSOPInstanceUID)
        for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                        "ReceivingApplicationEntityTitle", "PrivateInformation",
                        "PrivateInformationCreatorUID"):
            if keyword in file_meta:
                delattr(file_meta, keyword)
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = "MedRAG: DICOM PS3.15 basic profile (subset); pixels not checked"
    return out


def burned_in_annotation(ds: Dataset) -> bool:
    """True when the file declares text burned into the pixels (BurnedInAnnotation == "YES")."""
    return str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES"
