"""Property test on real mounts (SeaweedFS and Azurite): random operation sequences.

Hypothesis draws sequences of file operations over a small name alphabet (writes at
offsets, appends, truncates, mkdir, rmdir, unlink, rename of files and directories with and
without ``RENAME_NOREPLACE``, chmod, utime and ``touch -a``/``-m``, symlinks, FIFOs,
setting and removing extended attributes; see :mod:`tests.mount.fsops`).  Each sequence
runs in a fresh directory of the mount and of a local directory, one operation at a time on
both: every operation must end the same way (success, or the same errno), and afterwards
both trees must hold the same names, kinds, bytes, modes, extended attributes and the
times the operations set.  Then a second, fresh mount of the bucket (the first one still
mounted, so nothing is drained by an unmount) must show every tree the same way: what
``close()`` returned success for is in the bucket.

The examples are derandomized (a fixed sequence of seeds, no example database), so a run in
CI draws the same sequences as a run here.  The in-memory counterpart, on the core API
below the kernel, is ``tests/fs/test_fs_write.py::test_random_operations_match_a_local_directory``.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.mount.fsops import Op, apply, describe, diff, ops, snapshot
from tests.mount.world import World, new_world, objects, unmount_all

pytestmark = pytest.mark.mount

#: Sequences per provider.  Azurite is several times slower per request than SeaweedFS.
EXAMPLES = {"s3": 20, "azure": 10}
#: The longest attribute / entry / listing TTL of the mounts (tests.mount.world.FAST).
TTL = 1.0

if not os.path.exists("/dev/fuse") or os.geteuid() != 0:
    pytest.skip("needs /dev/fuse and root", allow_module_level=True)


@pytest.fixture(scope="module", params=["s3", "azure"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    w = new_world(request, tmp_path_factory, "props")
    yield w
    unmount_all(w)


def run_sequence(mnt: Path, local: Path, sequence: list[Op], *, dir_modes: bool) -> None:
    """Apply ``sequence`` to both roots, step by step; fail at the first difference."""
    done: list[str] = []
    for op in sequence:
        want, got = apply(local, op), apply(mnt, op)
        done.append(f"{op!r} -> {describe(want)}")
        assert got == want, (
            f"{op!r}: local {describe(want)}, mount {describe(got)}; steps:\n  " + "\n  ".join(done)
        )
    expected = snapshot(local, dir_modes=dir_modes)
    problems = diff(expected, snapshot(mnt, dir_modes=dir_modes))
    if problems:
        # Stale caches, or the bucket?  Look again once every TTL of the mount has passed.
        time.sleep(TTL + 0.5)
        problems += ["after the TTLs:", *diff(expected, snapshot(mnt, dir_modes=dir_modes))]
    assert not problems, "trees differ after:\n  " + "\n  ".join(done) + "\n" + "\n".join(problems)


def test_random_operations_match_a_local_directory(world: World) -> None:
    mnt = world.mount(f"blob:{world.bucket}", world.tmp / "mnt")
    local = world.tmp / "local"
    local.mkdir()
    counter = itertools.count()
    # SeaweedFS drops the metadata of `dir/` marker objects (the strict xfail in
    # tests/sdk/test_store_contract.py): a directory's mode there lasts only as long as the
    # mount's attribute cache, so it is compared on Azure only.
    dir_modes = world.kind != "s3"
    runs: list[tuple[str, list[Op]]] = []

    @settings(
        max_examples=EXAMPLES[world.kind],
        derandomize=True,
        database=None,
        deadline=None,
        # No shrinking: on real mounts it takes many minutes; the failure message lists
        # every step with its outcome instead.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(sequence=ops())
    def one(sequence: list[Op]) -> None:
        name = f"run{next(counter)}"
        (mnt / name).mkdir()
        (local / name).mkdir()
        run_sequence(mnt / name, local / name, sequence, dir_modes=dir_modes)
        runs.append((name, sequence))

    one()
    assert len(runs) >= EXAMPLES[world.kind] // 2, runs  # hypothesis ran what it was asked

    # A second daemon that has never seen these files reads them from the bucket alone.
    fresh = world.mount(f"blob:{world.bucket}", world.tmp / "fresh")
    try:
        for name, sequence in runs:
            expected = snapshot(local / name, dir_modes=dir_modes)
            # Look every name up before listing its directory: a listing carries no object
            # metadata, so symlinks and modes show once a name is looked up (SEMANTICS.md).
            for rel in sorted(expected, key=lambda rel: rel.count("/")):
                os.lstat(fresh / name / rel)
            problems = diff(expected, snapshot(fresh / name, dir_modes=dir_modes))
            if problems:
                stored = objects(world, f"{name}/")
                problems += [f"  bucket: {k} {stored[k].size} {stored[k].metadata}" for k in stored]
            assert not problems, (
                f"{name} differs on a fresh mount after:\n  "
                + "\n  ".join(map(repr, sequence))
                + "\n"
                + "\n".join(problems)
            )
    finally:
        world.umount(fresh)
        world.umount(mnt)
