"""``python -m medrag`` is the ``medrag`` command."""

from medrag.cli import main

raise SystemExit(main())
