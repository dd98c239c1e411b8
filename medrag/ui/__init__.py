"""The Streamlit layer: the only part of :mod:`medrag` that imports streamlit.

``resources`` (cached workbench, library bootstrap), ``state`` (session-state keys, set up in one
place), ``safe`` (escaping and link checks for untrusted text), ``viewer`` and ``figures`` (pure
image and plotly helpers), ``analysis`` (event stream -> :class:`AnalysisView`) and ``components``
(reusable page pieces). Pages import what they need from these modules.
"""
