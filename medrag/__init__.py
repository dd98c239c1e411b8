"""MedRAG: a local-first chest X-ray case workbench for education and research.

Not for clinical use. Importing this package has no side effects and loads no models.
"""

__version__ = "0.1.0"
