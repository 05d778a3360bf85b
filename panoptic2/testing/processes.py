"""Running code in a fresh interpreter, for tests of what a module imports or registers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# The checkout holding this package: put on PYTHONPATH so the child imports the same code.
_CHECKOUT = str(Path(__file__).resolve().parents[2])


def run_fresh_python(code: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs ``code`` with ``python -c`` in a new interpreter that imports this checkout.

    Args:
        code: Python source; a failing ``assert`` in it makes the return code nonzero.
        timeout: seconds before the child is killed.

    Returns:
        The completed process, with ``stdout`` and ``stderr`` as text.
    """
    env = {**os.environ, "PYTHONPATH": _CHECKOUT}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout
    )
