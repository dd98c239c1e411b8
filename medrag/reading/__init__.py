"""Image readers: what the pixels show, with probabilities, places and the measurements behind them.

- :mod:`medrag.reading.base`: the records (``ImageReading``, ``FindingRead``) and the reader registry;
- :mod:`medrag.reading.combine`: runs the configured readers and merges their findings;
- the readers themselves: ``anatomy`` (lung and heart segmentation, ratio, zones, angles, view, devices),
  ``medrag-cnn`` (this project's trained classifier with heatmaps) and ``xrv`` (torchxrayvision's
  pathology head, when its weights are present).

This ``__init__`` imports nothing, so the records load without torch.
"""
