"""The engine's parts, each readable and testable alone (composed by :class:`medrag.workbench.Workbench`).

- :mod:`medrag.engine.backends`: builds encoders, reasoners and summarisers once, with fallback and status;
- :mod:`medrag.engine.vectors`: keeps the library's vectors and indexes in sync with the store (the only code
  that fits an encoder or embeds library cases);
- :mod:`medrag.engine.search`: similar-case search and the library map;
- :mod:`medrag.engine.protocol`: the small interface :func:`medrag.pipeline.analyze` runs on.

This ``__init__`` imports nothing, so importing one part never loads the others.
"""
