"""The Settings page's library calibration panel in a class: the table per class, the switch for the educator only."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from medrag.reading.calibration import ClassCalibration, LibraryCalibration, load_calibration, save_calibration
from medrag.roles import hash_password

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "streamlit_app.py")
PASSWORD = "radiology-class-9"
SWITCH = "Read this library's analyses with its own calibration"

pytestmark = pytest.mark.slow


@pytest.fixture()
def calibrated_class(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A class-mode data folder whose library has a calibration written for the shipped weights."""
    from medrag.reading.cnn import CnnReader

    folder = tmp_path_factory.mktemp("medrag-calibrated-class")
    monkeypatch.setenv("MEDRAG_DATA_DIR", str(folder))
    monkeypatch.setenv("MEDRAG_DEMO_CASES", "24")
    monkeypatch.setenv("MEDRAG_WEB", "off")
    monkeypatch.setenv("MEDRAG_EDUCATOR_PASSWORD_HASH", hash_password(PASSWORD, iterations=20_000))
    figures = {"shipped_macro_f1": 0.26, "library_macro_f1": 0.32, "min_positives": 10, "per_class": {
        "pneumonia": {"positives": 40, "f1_shipped": 0.21, "f1_library": 0.44}, "effusion": {"positives": 25},
        "cardiomegaly": {"positives": 3}}}
    # effusion is fused with the measurements (medrag-fusion.json): its threshold is the fused probability's.
    save_calibration(folder, LibraryCalibration(
        CnnReader().identity,
        {"pneumonia": ClassCalibration(1.1, -0.5, 0.42), "effusion": ClassCalibration(0.9, -2.0, 0.1)},
        {"effusion": ClassCalibration(0.7, -2.1, 0.31)}, 1.25, 80, 61, "2026-12-04 22:00 UTC", figures))
    return folder


def _switch(at: AppTest) -> object:
    return next(t for t in at.toggle if t.label == SWITCH)


def test_the_educator_switches_the_librarys_calibration_and_a_learner_cannot(calibrated_class: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=240)
    at.switch_page("pages/5_Settings.py").run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "fitted here" in d.value.columns).set_index("finding")
    assert table.loc["pneumonia", "fitted here"] == "yes"
    assert table.loc["pneumonia", "threshold own"] == "0.420"
    assert (table.loc["pneumonia", "F1 shipped"], table.loc["pneumonia", "F1 own (cross-fitted)"]) == ("0.210", "0.440")
    assert table.loc["effusion", "fitted here"] == "yes, on the fused score"
    assert table.loc["effusion", "threshold own"] == "0.310"
    assert table.loc["cardiomegaly", "fitted here"] == "no: 3 positives, fewer than 10"
    assert table.loc["cardiomegaly", "threshold own"] == ""
    assert any("read with its own calibration, fitted on its 80 labelled films" in i.value for i in at.info)
    switch = _switch(at)
    assert switch.value is True and switch.disabled  # type: ignore[attr-defined]  # a learner sees, cannot switch
    assert not [b for b in at.button if b.key == "settings_calibration_fit"]  # nor fit

    at.sidebar.text_input(key="roles_password").input(PASSWORD)
    at.sidebar.button(key="roles_sign_in").click().run()
    switch = _switch(at)
    assert not switch.disabled  # type: ignore[attr-defined]
    assert at.button(key="settings_calibration_fit").label == "Fit again on this library's labelled films"
    switch.set_value(False).run()  # type: ignore[attr-defined]
    assert not at.exception, [e.value for e in at.exception]
    assert load_calibration(calibrated_class).active is False  # type: ignore[union-attr]
    assert any("switched off" in i.value for i in at.info) and _switch(at).value is False  # type: ignore[attr-defined]

    from medrag.config import Settings
    from medrag.workbench import Workbench

    assert Workbench(Settings(data_dir=calibrated_class, web_provider="off")).backends.reader.normal_margin is None
    _switch(at).set_value(True).run()  # type: ignore[attr-defined]
    assert load_calibration(calibrated_class).active is True  # type: ignore[union-attr]
    assert Workbench(Settings(data_dir=calibrated_class, web_provider="off")).backends.reader.normal_margin == 1.25
