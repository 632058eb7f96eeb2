"""The emostream CLI run in the test's own process, its output captured.

A ``python -m emostream`` subprocess per call costs seconds of start-up on a loaded 2-core box
(seven of them were ~15 s of the netns lab's set-up), and the tests that drive the CLI make many.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys

from emostream.cli import main


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``emostream ARGS`` with ``stdin`` as its standard input; fails the test unless it exits 0."""
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin or "")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        sys.stdin = old_stdin
    assert code == 0, out.getvalue() + err.getvalue()
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())
