"""De-identification of DICOM datasets: the display allow-list and the scrubbed copy."""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from medrag.deid import burned_in_annotation, deidentify, scrub_dataset

PHI = {
    "PatientName": "Doe^Janet^Q",
    "PatientID": "MRN-4471-XQ",
    "PatientBirthDate": "19510312",
    "PatientAddress": "12 Acacia Avenue, Springfield",
    "PatientTelephoneNumbers": "555-0199-221",
    "OtherPatientIDs": "ALT-ID-77881",
    "AccessionNumber": "ACC20240131X",
    "InstitutionName": "St Elsewhere General Hospital",
    "InstitutionAddress": "1 Hospital Road, Shelbyville",
    "ReferringPhysicianName": "House^Gregory",
    "PerformingPhysicianName": "Quinn^Michaela",
    "OperatorsName": "Radtech^Rita",
    "StudyDate": "20240131",
    "SeriesDate": "20240130",
    "AcquisitionDate": "20240129",
    "ContentDate": "20240128",
    "StudyTime": "101112",
    "SeriesTime": "101213",
    "AcquisitionTime": "101314",
    "ContentTime": "101415",
    "StudyID": "STUDY-99812",
    "StudyDescription": "CHEST PA for Janet Doe",
    "StationName": "XRAY-ROOM-7B",
    "DeviceSerialNumber": "SN-0042-ZETA",
}
PRIVATE_VALUE = "SECRET-PRIVATE-NOTE-Doe"
NESTED_NAME = "Nested^Person^X"


def _phi_dataset() -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.7.8.9"
    ds.file_meta.SourceApplicationEntityTitle = "ST_ELSEWHERE"
    for keyword, value in PHI.items():
        setattr(ds, keyword, value)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.SOPInstanceUID = "1.2.3.4.5.6.7.8.9"
    ds.StudyInstanceUID = "1.2.3.4.5.6.7.1"
    ds.SeriesInstanceUID = "1.2.3.4.5.6.7.2"
    ds.Modality = "DX"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientSex = "F"
    ds.PatientAge = "093Y"
    ds.Rows, ds.Columns = 64, 64
    ds.PixelSpacing = [0.139, 0.139]
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.KVP = 120
    ds.Manufacturer = "Acme Imaging"
    ds.BurnedInAnnotation = "NO"
    block = ds.private_block(0x0011, "ACME PRIVATE", create=True)
    block.add_new(0x01, "LO", PRIVATE_VALUE)
    item = Dataset()
    item.PersonName = NESTED_NAME
    item.ObservationDateTime = "20240131101010"
    item.CodeMeaning = "Chest"
    ds.ContentSequence = Sequence([item])
    return ds


def _all_text(ds: Dataset) -> str:
    parts: list[str] = []

    def visit(_: Dataset, elem: pydicom.DataElement) -> None:
        if elem.VR != "SQ":
            parts.append(str(elem.value))

    ds.walk(visit)
    parts.extend(str(elem.value) for elem in ds.file_meta)
    return "\n".join(parts)


def test_deidentify_returns_no_phi_and_keeps_technical_tags() -> None:
    ds = _phi_dataset()
    out = deidentify(ds)
    blob = "\n".join(f"{k}={v}" for k, v in out.items())
    for value in [*PHI.values(), PRIVATE_VALUE, NESTED_NAME, "Janet", "Doe", "1951", "2024"]:
        assert value not in blob, value
    assert out["Modality"] == "DX"
    assert out["View"] == "PA"
    assert out["Body part"] == "CHEST"
    assert out["Pixel spacing (mm)"] == "0.139, 0.139"
    assert out["Sex"] == "F"
    assert out["Age"] == "90+Y"  # ages above 89 are aggregated
    assert out["Transfer syntax"] == "Explicit VR Little Endian"
    assert all(isinstance(v, str) for v in out.values())


def test_deidentify_normalises_age_and_drops_junk_sex() -> None:
    ds = Dataset()
    ds.PatientAge = "045Y"
    ds.add_new(0x00100040, "CS", "X")
    out = deidentify(ds)
    assert out["Age"] == "45Y"
    assert "Sex" not in out


def test_scrub_dataset_removes_or_blanks_phi_everywhere() -> None:
    ds = _phi_dataset()
    original_name = str(ds.PatientName)
    scrubbed = scrub_dataset(ds)
    text = _all_text(scrubbed)
    for value in [*PHI.values(), PRIVATE_VALUE, NESTED_NAME, "20240131101010", "ST_ELSEWHERE"]:
        assert value not in text, value
    # Type-2 attributes stay present but empty; others are gone.
    assert "PatientName" in scrubbed and str(scrubbed.PatientName) == ""
    assert "PatientID" in scrubbed and scrubbed.PatientID == ""
    assert "InstitutionName" not in scrubbed
    assert "OtherPatientIDs" not in scrubbed
    assert not any(elem.tag.is_private for elem in scrubbed)
    assert scrubbed.PatientIdentityRemoved == "YES"
    # Technical content survives.
    assert scrubbed.Modality == "DX" and scrubbed.ViewPosition == "PA"
    assert scrubbed.ContentSequence[0].CodeMeaning == "Chest"
    # The input is untouched.
    assert str(ds.PatientName) == original_name


def test_scrub_dataset_replaces_uids_consistently() -> None:
    a = scrub_dataset(_phi_dataset())
    b = scrub_dataset(_phi_dataset())
    assert a.StudyInstanceUID != "1.2.3.4.5.6.7.1"
    assert a.StudyInstanceUID == b.StudyInstanceUID  # same study -> same pseudonymous UID
    assert a.SOPInstanceUID == a.file_meta.MediaStorageSOPInstanceUID
    assert a.SeriesInstanceUID != a.StudyInstanceUID
    assert pydicom.uid.UID(a.StudyInstanceUID).is_valid


def test_burned_in_annotation_flag() -> None:
    ds = Dataset()
    assert burned_in_annotation(ds) is False
    ds.BurnedInAnnotation = "NO"
    assert burned_in_annotation(ds) is False
    ds.BurnedInAnnotation = "YES"
    assert burned_in_annotation(ds) is True


def test_scrubbed_dataset_still_writes_and_reads(tmp_path) -> None:
    ds = _phi_dataset()
    ds.set_pixel_data(np.zeros((64, 64), dtype=np.uint16), "MONOCHROME2", 12)
    scrubbed = scrub_dataset(ds)
    path = tmp_path / "scrubbed.dcm"
    scrubbed.save_as(path, enforce_file_format=True)
    again = pydicom.dcmread(path)
    assert again.PatientIdentityRemoved == "YES"
    assert again.pixel_array.shape == (64, 64)
