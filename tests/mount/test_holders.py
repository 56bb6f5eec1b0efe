"""Which processes hold a directory (blobfs/mount/holders.py), on a plain directory: the
scan reads only /proc, so it needs no mount (the busy-mount message is checked on a real
dead mount in tests/mount/test_mount.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from blobfs.mount.holders import SHOWN, Holders, holders


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]]:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f").write_text("x")
    inside = subprocess.Popen(["sleep", "60"], cwd=tmp_path / "sub")
    script = "import sys,time; f=open(sys.argv[1]); print('open', flush=True); time.sleep(60)"
    holding = subprocess.Popen(
        [sys.executable, "-c", script, "sub/f"], cwd=tmp_path, stdout=subprocess.PIPE
    )
    assert holding.stdout is not None and holding.stdout.readline() == b"open\n"
    try:
        yield inside, holding
    finally:
        for p in (inside, holding):
            p.kill()
            p.wait()


def test_current_directories_and_open_files_are_found(
    tmp_path: Path, processes: tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]
) -> None:
    inside, holding = processes
    found = holders(tmp_path / "sub")
    by_pid = {h.pid: h for h in found.found}
    assert by_pid[inside.pid].how == "current directory"
    assert by_pid[inside.pid].command == "sleep"
    assert by_pid[holding.pid].how == f"open file {tmp_path / 'sub' / 'f'}"
    assert f"pid {inside.pid} (sleep: current directory)" in found.describe()
    assert holders(tmp_path / "elsewhere").found == []


def test_the_message_is_bounded() -> None:
    from blobfs.mount.holders import Holder

    many = Holders([Holder(n, "cat", "open file /m/x") for n in range(SHOWN + 3)])
    assert many.describe().endswith("and 3 more")
    assert Holders(hidden=True).describe() == "no process of yours holds it"
