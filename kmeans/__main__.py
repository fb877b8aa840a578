"""``python -m kmeans train|features ...`` (see :mod:`kmeans.cli`)."""

from kmeans.cli import main

raise SystemExit(main())
