"""The daemon's log format: journald's priority prefixes when stderr is the journal, no
secrets whatever prints them.  A daemon run as systemd runs it: its stderr a socket named by
``$JOURNAL_STREAM``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from blobfs.mount.logs import to_journal

REPO = Path(__file__).resolve().parents[2]

#: The daemon's logging set up as in ``run_foreground``, then a few lines logged.
SCRIPT = """
import logging, sys
from blobfs.mount.logs import setup_logging
from blobfs.options import parse_options
setup_logging(parse_options(["log_level=info"]))
log = logging.getLogger("blobfs.test")
log.warning("put 'a.txt' failed: X-Amz-Security-Token=SECRETVALUE&x=1")
log.info("mounted")
try:
    raise ValueError("boom")
except ValueError:
    log.exception("daemon failed")
"""


def run_daemon_logging(env: dict[str, str], stderr: int) -> None:
    subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        stderr=stderr,
        check=True,
        timeout=60,
    )


def test_journal_lines_carry_priorities_and_no_timestamps() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        st = os.fstat(theirs.fileno())
        run_daemon_logging({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, theirs.fileno())
        theirs.close()
        text = b"".join(iter(lambda: ours.recv(65536), b"")).decode()
    lines = text.splitlines()
    assert lines[0].startswith("<4>blobfs.test: put 'a.txt' failed"), lines
    assert "SECRETVALUE" not in text and "REDACTED" in lines[0]
    assert lines[1] == "<6>blobfs.test: mounted"
    assert lines[2] == "<3>blobfs.test: daemon failed"
    # Every line of the traceback keeps the error's priority.
    assert all(line.startswith("<3>") for line in lines[2:]) and "ValueError: boom" in text


def test_plain_stderr_gets_timestamps(tmp_path: Path) -> None:
    out = tmp_path / "stderr"
    with open(out, "wb") as f:
        # A stale JOURNAL_STREAM (inherited, not this stderr) does not count.
        run_daemon_logging({"JOURNAL_STREAM": "1:1"}, f.fileno())
    first = out.read_text().splitlines()[0]
    assert not first.startswith("<") and " WARNING blobfs.test: " in first
    assert "SECRETVALUE" not in out.read_text()


def test_journal_detection() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        st = os.fstat(theirs.fileno())
        fd = theirs.fileno()
        assert to_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, fd)
        assert not to_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}, fd)
        assert to_journal({"INVOCATION_ID": "abc"}, fd)
        assert not to_journal({}, fd)
