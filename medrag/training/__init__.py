"""Training scripts for the project's own models (run as ``python -m medrag.training.<script>``).

Each script is seeded and reproducible on 2 CPU cores, reads ../shared/data (never copied into the
repository) and writes small weights with a JSON stamp beside them. Nothing here is imported by the app.
"""
