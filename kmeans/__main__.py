"""``python -m semanticodec.kmeans train|features ...`` (see :mod:`semanticodec.kmeans.cli`)."""

from semanticodec.kmeans.cli import main

raise SystemExit(main())
