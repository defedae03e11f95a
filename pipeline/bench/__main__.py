"""``python -m pipeline.bench``: see :mod:`pipeline.bench.run`."""

from pipeline.bench.run import main

raise SystemExit(main())
