"""ImagePipe's local side: the client, the batch CLI, the embedded local stack and benchmarks.

``lambda_src/`` is the deployable Lambda code root (as on AWS, it is on ``sys.path`` as a
root, so its package is ``imagepipe``). This package puts it on the path once, so the
dashboard, the CLI and the local stack run exactly the code that is deployed.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LAMBDA_SRC = PROJECT_ROOT / "lambda_src"

if str(LAMBDA_SRC) not in sys.path:
    sys.path.insert(0, str(LAMBDA_SRC))
