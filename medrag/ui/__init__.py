"""The Streamlit layer: the only part of :mod:`medrag` that imports streamlit.

``page`` (what every page does first), ``resources`` (the cached workbench, the demo bootstrap, the
library map), ``data`` (every read and write of the library and the history, cached: pages never touch
the store), ``state`` (session-state keys, set up in one place), ``safe`` (escaping and link checks for
untrusted text), ``viewer``, ``images`` and ``figures`` (image and plotly helpers), ``tables`` (the
tables pages show), ``analysis`` (stage titles and one-line outcomes of a
:class:`~medrag.analysis.Analysis`) and ``panels`` (the result panels shared by the pages).
"""
