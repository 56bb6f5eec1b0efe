"""``python -m sdk.local_server DIR``: run a foreground server until Ctrl-C (debugging)."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from sdk.local_server.server import SeaweedServer


def main(argv: Sequence[str]) -> int:
    """Serve from directory ``argv[0]``, printing the endpoint and admin key."""
    if len(argv) != 1:
        print("usage: python -m sdk.local_server DIRECTORY", file=sys.stderr)
        return 2
    with SeaweedServer(Path(argv[0])) as server:
        print(f"endpoint_url={server.endpoint_url}")
        print(f"access_key_id={server.access_key_id}")
        print(f"secret_access_key={server.secret_access_key}")
        print(f"started in {server.startup_seconds:.2f} s; Ctrl-C stops", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
