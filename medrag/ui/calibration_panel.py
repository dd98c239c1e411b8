"""The Settings page's panel on a library's own calibration: its state, the educator's switch, and per class
what it changed (measured by ``medrag eval reading --write-calibration``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from medrag.config import Settings
from medrag.errors import MedRAGError
from medrag.evaluation.calibration_job import FitJob, fit_job, start_fit
from medrag.evaluation.calibration_view import CalibrationClassRow, calibration_rows
from medrag.reading.calibration import (
    REMOVE_COMMAND,
    WRITE_COMMAND,
    LibraryCalibration,
    load_calibration,
    set_calibration_active,
)
from medrag.ui.roles import is_educator, require_educator
from medrag.ui.safe import escape_markdown

#: The switch's widget key, and where a failed switch leaves its message for the next run.
SWITCH_KEY = "settings_library_calibration"
SWITCH_ERROR = "settings_library_calibration_error"
#: Whether this session last saw a fit running (so its end reruns the page once, to show the new calibration).
FIT_SEEN_RUNNING = "settings_calibration_fit_running"
#: How often the fit's progress refreshes while it runs.
FIT_REFRESH_SECONDS = 3.0


def _switch(data_dir: Path) -> None:
    """The switch's callback: write the new state (educator only); a refusal is shown on the next run."""
    try:
        require_educator("switch this library's calibration")
        set_calibration_active(data_dir, bool(st.session_state[SWITCH_KEY]))
    except MedRAGError as exc:
        st.session_state[SWITCH_ERROR] = str(exc)


def _figure(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def calibration_frame(rows: list[CalibrationClassRow]) -> pd.DataFrame:
    """The per-class table: positives here, whether it is refitted, thresholds and F1 beside the shipped ones."""
    return pd.DataFrame({
        "finding": [r.finding for r in rows],
        "positives here": ["" if r.positives is None else str(r.positives) for r in rows],
        "fitted here": [r.fitted_here for r in rows],
        "threshold shipped": [_figure(r.shipped_threshold) for r in rows],
        "threshold own": [_figure(r.library_threshold) if r.refitted else "" for r in rows],
        "F1 shipped": [_figure(r.f1_shipped) for r in rows],
        "F1 own (cross-fitted)": [_figure(r.f1_library) if r.refitted else "" for r in rows],
    })


def _state_line(calibration: LibraryCalibration) -> str:
    if calibration.active:
        return f"This library's analyses read with its own calibration, {calibration.summary()}."
    return (f"This library has its own calibration, {calibration.summary()}, switched off: its analyses read with "
            "the shipped numbers.")


def _fit_line(job: FitJob, fitted: bool = True) -> str:
    started = f"{job.started:%Y-%m-%d %H:%M} UTC"
    if job.state == "running":
        return (f"Fitting this library's calibration (started {started}, {job.seconds:.0f} s so far): every labelled "
                "film is read, then cross-fitted by patient before anything is written.")
    if job.state == "done":
        wrote = "the calibration below" if fitted else "a calibration that has since been removed"
        return f"The fit started {started} finished in {job.seconds:.0f} s and wrote {wrote}."
    if job.state == "failed":
        return f"The fit started {started} failed after {job.seconds:.0f} s; its output:"
    return f"The fit started {started} stopped without finishing (the server may have restarted); start it again."


def _fit_progress(settings: Settings, fitted: bool) -> None:
    """The last fit's state and output; while it runs, refreshed every few seconds, and the page once it ends."""
    job = fit_job(Path(settings.data_dir))
    running = job is not None and job.state == "running"
    if st.session_state.get(FIT_SEEN_RUNNING) and not running:
        st.session_state[FIT_SEEN_RUNNING] = False
        st.rerun()  # the whole page: the new calibration's table and switch
    st.session_state[FIT_SEEN_RUNNING] = running
    if job is None:
        return
    show = st.info if job.state in ("running", "done") else st.warning
    show(escape_markdown(_fit_line(job, fitted)), icon=":material/model_training:")
    if job.log_tail and job.state != "done":
        st.code("\n".join(job.log_tail), language="text")


def _fit_controls(settings: Settings, fitted: bool) -> None:
    """The educator's button that fits the library's calibration in the background, and its progress."""
    job = fit_job(Path(settings.data_dir))
    running = job is not None and job.state == "running"
    if is_educator():
        label = "Fit again on this library's labelled films" if fitted else "Fit on this library's labelled films"
        if st.button(label, key="settings_calibration_fit", disabled=running, icon=":material/model_training:",
                     help=f"Runs `{WRITE_COMMAND}` in the background; analyses read with the new numbers as soon "
                          "as it has written them."):
            try:
                require_educator("fit this library's calibration")
                start_fit(settings)
                running = True
            except MedRAGError as exc:
                st.error(escape_markdown(str(exc)))
    st.fragment(_fit_progress, run_every=FIT_REFRESH_SECONDS if running else None)(settings, fitted)


def library_calibration_panel(settings: Settings) -> None:
    """Show the library's calibration (or how to fit one) and, for the educator, the switch that uses it and the
    button that fits it."""
    data_dir = Path(settings.data_dir)
    st.markdown("**This library's own calibration**")
    try:
        calibration = load_calibration(data_dir)
    except MedRAGError as exc:
        st.warning(f"Its analyses use the shipped calibration: {escape_markdown(str(exc))}", icon=":material/tune:")
        st.code(REMOVE_COMMAND, language="bash")
        return
    if calibration is None:
        st.caption("None: analyses read with the shipped calibration, fitted on NIH's prevalences. A labelled library "
                   "with other prevalences reads better with numbers fitted on its own films (cross-fitted by "
                   f"patient before they are written). The educator fits them here or with `{WRITE_COMMAND}`.")
        _fit_controls(settings, fitted=False)
        return
    error = st.session_state.pop(SWITCH_ERROR, None)
    if error:
        st.error(escape_markdown(error), icon=":material/lock:")
    st.session_state[SWITCH_KEY] = calibration.active  # the file decides (the CLI can switch it too)
    educator = is_educator()
    st.toggle(
        "Read this library's analyses with its own calibration", key=SWITCH_KEY, on_change=_switch,
        args=(data_dir,), disabled=not educator,
        help="Off: the shipped calibration and thresholds, fitted on NIH's held-out films. The fit is kept either "
             "way, and the next analysis reads with the choice." + ("" if educator else
                                                                     " Only the educator can switch it."),
    )
    st.info(escape_markdown(_state_line(calibration)), icon=":material/tune:")
    st.dataframe(calibration_frame(calibration_rows(calibration)), hide_index=True, width="stretch",
                 height="content")
    st.caption("Only probabilities and thresholds move, so every AUC stays the shipped one. A class is refitted "
               f"with at least {calibration.figures.get('min_positives', 10)} positive films here. The F1 with this "
               "library's numbers is cross-fitted: each half of the patients read with numbers fitted on the other. "
               f"Fit again after importing more labelled films (`{WRITE_COMMAND}`); `{REMOVE_COMMAND}` deletes it.")
    _fit_controls(settings, fitted=True)


__all__ = ["SWITCH_ERROR", "SWITCH_KEY", "calibration_frame", "library_calibration_panel"]
