"""The daemon's log: where it goes and how each line looks.

* ``log_file=PATH``: lines with a timestamp and the pid, as any log file.
* Under systemd with stderr connected to the journal (``$JOURNAL_STREAM`` names stderr's
  device and inode, as ``systemd.exec(5)`` describes; or ``$INVOCATION_ID`` is set and
  stderr is a socket): no timestamp nor pid -- the journal records both -- and each line
  starts with its syslog priority as ``<N>``, which journald turns into the entry's level
  (``journalctl -p warning`` then works).
* Otherwise (a terminal, ``--foreground``): timestamp, pid, level.

What an operator can follow at the default level (WARNING): one line per store request
that failed after the sdk's retries (:mod:`blobfs.bridge.requests`), per file stored or
kept by crash recovery at mount time (:mod:`blobfs.write.recovery`), and per upload given
up (:mod:`blobfs.fs.staging`).  Every line goes through :func:`sdk.logsafe.redact`, so a
credential never reaches the log whatever prints it.
"""

from __future__ import annotations

import logging
import os
import stat
import sys

from blobfs.options import MountOptions
from sdk.logsafe import RedactingFilter

#: Python level -> syslog priority (sd-daemon(3)).
PRIORITIES = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class JournalFormatter(logging.Formatter):
    """``<N>name: message``: the priority prefix journald reads, nothing it adds itself."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        priority = PRIORITIES.get(record.levelno, 6 if record.levelno < logging.WARNING else 4)
        text = super().format(record)
        # A traceback spans lines: each gets the prefix, or journald files it as info.
        return "\n".join(f"<{priority}>{line}" for line in text.split("\n"))


def to_journal(environ: dict[str, str] | None = None, fd: int = 2) -> bool:
    """Whether ``fd`` (stderr) is connected to the systemd journal."""
    env = os.environ if environ is None else environ
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    stream = env.get("JOURNAL_STREAM", "")
    if stream:
        device, _, inode = stream.partition(":")
        return (
            device.isdigit()
            and inode.isdigit()
            and (st.st_dev, st.st_ino)
            == (
                int(device),
                int(inode),
            )
        )
    return bool(env.get("INVOCATION_ID")) and stat.S_ISSOCK(st.st_mode)


def setup_logging(options: MountOptions) -> None:
    """Send the daemon's log where ``options`` say, formatted for it (module docstring)."""
    handler: logging.Handler
    if options.log_file is not None:
        options.log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(options.log_file)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
        )
    else:
        handler = logging.StreamHandler(sys.stderr)
        if to_journal():
            handler.setFormatter(JournalFormatter())
        else:
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
            )
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(options.log_level)


__all__ = ["JournalFormatter", "setup_logging", "to_journal"]
