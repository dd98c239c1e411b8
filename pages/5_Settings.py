"""Settings: backends and models (ready / missing and how to get them), keys present, paths, and k."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from medrag.ui import state
from medrag.ui.page import error_boundary, setup_page
from medrag.ui.safe import escape_markdown
from medrag.ui.tables import backends_frame, compute_line, key_presence, web_search_line

workbench = setup_page("Settings", "settings")
settings = workbench.settings


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


st.subheader("Retrieval")
st.number_input(
    "k: similar cases per analysis", min_value=1, max_value=50, step=1,
    key=state.bind_widget("settings_k", state.K), on_change=state.store_widget, args=("settings_k", state.K),
    help="Used by Analyze and the quiz for this session. The default comes from MEDRAG_K.",
)

st.subheader("Backends in use")
with error_boundary():
    st.dataframe(backends_frame(workbench), hide_index=True, width="stretch")
    st.caption(
        "Choose backends with MEDRAG_IMAGE_ENCODER, MEDRAG_TEXT_ENCODER, MEDRAG_REASONER and MEDRAG_SUMMARISER; "
        "a backend whose weights are missing falls back to the offline default."
    )
    st.markdown(compute_line(settings))

st.subheader("Models")
with error_boundary():
    from medrag.weights import list_models
    from medrag.weights.catalog import fix_script

    models = list_models(settings)
    st.dataframe(
        pd.DataFrame({
            "model": [m.name for m in models],
            "status": [m.status for m in models],
            "kind": [m.kind for m in models],
            "where it looks / what was found": [str(m.path) if m.ready and m.path else m.detail for m in models],
            "size": [_size(m.size_bytes) if m.size_bytes else "" for m in models],
            "what it is": [m.description for m in models],
        }),
        hide_index=True, width="stretch",
    )
    missing = [model for model in models if not model.ready and model.fix]
    if missing:
        st.markdown(f"**To get the {len(missing)} missing model{'s' if len(missing) > 1 else ''}** "
                    "(each falls back to the offline default until then):")
        st.code("\n\n".join(fix_script(model.name, model.fix) for model in missing), language="bash")

st.subheader("Quality of the image reading")
with error_boundary():
    from medrag.evaluation.quality import EVAL_COMMAND, library_eval, library_rows, model_quality
    from medrag.ui.calibration_panel import library_calibration_panel
    from medrag.ui.tables import quality_frame

    st.caption("Figures measured on patients the models never saw, with 95 % bootstrap intervals (by patient) "
               "and the targets MedRAG aims for. For education and research only: these are not clinical "
               "performance claims.")
    st.markdown("**Shipped models** (held-out figures stored with their weights)")
    st.dataframe(quality_frame(model_quality()), hide_index=True, width="stretch", height="content")
    saved = library_eval(settings.data_dir)
    if saved is None:
        st.markdown("**This library**: not evaluated yet. With a labelled library imported (NIH fine labels), run:")
        st.code(EVAL_COMMAND, language="bash")
    else:
        st.markdown(f"**This library** (`{escape_markdown(str(saved.get('command', '')))}`, "
                    f"{escape_markdown(str(saved.get('date', '')))})")
        st.dataframe(quality_frame(library_rows(saved)), hide_index=True, width="stretch", height="content")
    library_calibration_panel(settings)

st.subheader("Web search")
with error_boundary():
    st.write(escape_markdown(web_search_line(settings)))
    st.dataframe(key_presence(settings), hide_index=True)
    st.caption("Keys are read from the environment or .streamlit/secrets.toml and are never shown. Allowlisted sites: "
               + ", ".join(escape_markdown(d) for d in settings.allowlist))

st.subheader("Paths")
st.dataframe(
    pd.DataFrame({
        "what": ["data folder", "database", "index", "thumbnails", "uploads", "demo library", "fitted models"],
        "path": [str(p) for p in (settings.data_dir, settings.db_path, settings.index_dir, settings.thumbs_dir,
                                   settings.uploads_dir, settings.demo_dir, settings.models_dir)],
    }),
    hide_index=True, width="stretch",
)
st.caption("Move everything at once with MEDRAG_DATA_DIR.")
