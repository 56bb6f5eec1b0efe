"""Real mounts through /dev/fuse, on SeaweedFS (S3) and on Azurite (Azure).

The daemon runs as users run it: ``blobfs mount`` in a subprocess (backgrounded, so its
readiness handshake is exercised), and ordinary tools read the mount.  One bucket per
provider is filled once per module; tests mount it (or a prefix of it) with short TTLs.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blobfs.mount import mountpoint
from tests.mount.world import (
    BLOBFS,
    FAST,
    REPO,
    MiB,
    World,
    assert_gone,
    new_world,
    payload,
    sh,
    unmount_all,
)

pytestmark = pytest.mark.mount

SIZES = [0, 1, 4095, MiB - 1, MiB, MiB + 1, 5 * MiB + 12345]
#: Entries of the large directory.  Azurite creates and lists blobs far more slowly than
#: SeaweedFS (about 30 PUTs/s on this 2-core machine), so it gets a smaller one.
LARGE_DIR = {"s3": 5000, "azure": 1500}


if not os.path.exists("/dev/fuse") or os.geteuid() != 0:
    pytest.skip("needs /dev/fuse and root", allow_module_level=True)


# -- the bucket and the mounts ------------------------------------------------------------------


@pytest.fixture(scope="module", params=["s3", "azure"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    w = new_world(request, tmp_path_factory, "mnt")
    kind = w.kind
    objects = {f"sizes/s{n}": payload(n, n) for n in SIZES}
    objects.update({f"large/f{i:05d}": b"%d" % i for i in range(LARGE_DIR[kind])})
    objects.update({"pre/inner/x.txt": b"x\n", "pre/y.txt": b"y\n", "top.txt": b"top\n"})
    w.put_many(objects)
    w.put_many(
        {"meta/s3fs.txt": b"meta\n"},
        metadata={"mode": str(0o100640), "uid": "1234", "gid": "4321", "mtime": "1600000000"},
    )
    yield w
    unmount_all(w)


@pytest.fixture(scope="module")
def mnt(world: World) -> Iterator[Path]:
    where = world.mount(f"blob:{world.bucket}", world.tmp / "mnt")
    yield where
    world.umount(where)


# -- reading with ordinary tools ----------------------------------------------------------------


def test_ls_stat_find_cat_md5sum_dd(mnt: Path) -> None:
    listing = sh(f"ls {mnt}").split()
    assert listing == ["large", "meta", "pre", "sizes", "top.txt"]
    ls_l = sh(f"ls -l {mnt}/sizes").splitlines()
    assert len(ls_l) == 1 + len(SIZES)
    for n in SIZES:
        path = mnt / "sizes" / f"s{n}"
        data = payload(n, n)
        assert sh(f"stat -c %s {path}").strip() == str(n)
        assert sh(f"cat {path} | md5sum").split()[0] == hashlib.md5(data).hexdigest()
        assert sh(f"md5sum {path}").split()[0] == hashlib.md5(data).hexdigest()
        out = subprocess.run(
            ["dd", f"if={path}", "bs=64k", "status=none"], capture_output=True, check=True
        ).stdout
        assert out == data
    found = sh(f"find {mnt}/sizes {mnt}/pre -type f | sort").split()
    assert found == sorted(
        [f"{mnt}/sizes/s{n}" for n in SIZES] + [f"{mnt}/pre/inner/x.txt", f"{mnt}/pre/y.txt"]
    )
    assert sh(f"df {mnt} | tail -1").split()[-1] == str(mnt)


def test_python_random_access(mnt: Path) -> None:
    rng = random.Random(3)
    for n in SIZES:
        data = payload(n, n)
        with open(mnt / "sizes" / f"s{n}", "rb", buffering=0) as f:
            for _ in range(40):
                off = rng.randrange(0, n + 2)
                size = rng.choice([1, 17, 4096, 100_000, MiB + 3])
                f.seek(off)
                assert f.read(size) == data[off : off + size]
            assert os.pread(f.fileno(), 10, n) == b""


def test_large_directory_lists_completely(world: World, mnt: Path) -> None:
    count = LARGE_DIR[world.kind]
    names = os.listdir(mnt / "large")
    assert len(names) == count == len(set(names))
    lines = sh(f"ls -l {mnt}/large").splitlines()
    assert len(lines) == count + 1
    last = count - 1
    assert (mnt / "large" / f"f{last:05d}").read_bytes() == b"%d" % last


def test_s3fs_metadata(mnt: Path) -> None:
    st = os.stat(mnt / "meta" / "s3fs.txt")
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o640, 1234, 4321)
    assert int(st.st_mtime) == 1600000000


def test_remote_changes_visible_after_ttl(world: World, mnt: Path) -> None:
    world.put_many({"changes/f": b"old"})
    time.sleep(1.2)
    assert (mnt / "changes" / "f").read_bytes() == b"old"
    world.put_many({"changes/f": b"new content", "changes/g": b"appeared"})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if (mnt / "changes" / "f").read_bytes() == b"new content" and "g" in os.listdir(
            mnt / "changes"
        ):
            break
        time.sleep(0.2)
    assert (mnt / "changes" / "f").read_bytes() == b"new content"
    assert sorted(os.listdir(mnt / "changes")) == ["f", "g"]


def test_estale_on_replaced_object(world: World, mnt: Path) -> None:
    old, new = payload(16 * MiB, 1), payload(16 * MiB, 2)
    world.put_many({"estale/f": old})
    time.sleep(1.2)
    fd = os.open(mnt / "estale" / "f", os.O_RDONLY)
    try:
        assert os.pread(fd, 4096, 0) == old[:4096]
        world.put_many({"estale/f": new})
        with pytest.raises(OSError) as info:
            os.pread(fd, 4096, 15 * MiB)
        assert info.value.errno == errno.ESTALE
    finally:
        os.close(fd)
    time.sleep(1.2)
    with open(mnt / "estale" / "f", "rb") as f:
        f.seek(15 * MiB)
        assert f.read(4096) == new[15 * MiB : 15 * MiB + 4096]


def test_hard_links_refused(mnt: Path) -> None:
    # Writing is tested in tests/mount/test_mount_write.py; hard links stay unsupported.
    with pytest.raises(OSError) as info:
        os.link(mnt / "top.txt", mnt / "hard")
    assert info.value.errno == errno.EOPNOTSUPP


# -- prefix, ro, semantics examples -------------------------------------------------------------


def test_prefix_mount(world: World) -> None:
    where = world.mount(f"blob:{world.bucket}/pre", world.tmp / "prefix")
    try:
        assert sorted(os.listdir(where)) == ["inner", "y.txt"]
        assert (where / "inner" / "x.txt").read_bytes() == b"x\n"
    finally:
        world.umount(where)


def test_the_daemon_runs_its_own_code_in_the_root_directory(world: World) -> None:
    """``blobfs mount`` run where a ``blobfs`` and an ``sdk`` package lie (a checkout of
    something else), with relative paths in its options and environment: the daemon imports
    its own code, keeps no directory busy, and finds every path where the user meant it."""
    here = world.tmp / "elsewhere"
    for package in ("blobfs", "sdk"):
        (here / package).mkdir(parents=True)
        (here / package / "__init__.py").write_text("raise SystemExit('the wrong package')\n")
    where = world.tmp / "from-elsewhere"
    where.mkdir()
    env = dict(world.env, BLOBFS_CONFIG=os.path.relpath(world.env["BLOBFS_CONFIG"], here))
    proc = world.blobfs(
        "mount",
        f"blob:{world.bucket}",
        str(where),
        "-o",
        f"{FAST},log_file=mount.log",
        cwd=here,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    world.mounts.append(where)
    try:
        assert (where / "top.txt").read_bytes() == b"top\n"
        pid = mountpoint.read_pid(where)
        assert pid is not None and os.readlink(f"/proc/{pid}/cwd") == "/"
        assert (here / "mount.log").exists()
    finally:
        world.umount(where)


def test_ro_mount(world: World) -> None:
    where = world.mount(f"blob:{world.bucket}", world.tmp / "ro", FAST + ",ro")
    try:
        assert (where / "top.txt").read_bytes() == b"top\n"
        with pytest.raises(OSError) as info:
            (where / "new.txt").write_bytes(b"x")
        assert info.value.errno == errno.EROFS
        opts = [ln.split()[3] for ln in open("/proc/mounts") if ln.split()[1] == str(where)]
        assert opts and "ro" in opts[0].split(",")
    finally:
        world.umount(where)


def _semantics_examples() -> tuple[dict[str, bytes], list[tuple[str, str]]]:
    text = (REPO / "docs" / "SEMANTICS.md").read_text()
    bucket_src = re.search(r"```python\n(BUCKET = .*?)```", text, re.S)
    assert bucket_src
    scope: dict[str, Any] = {}
    exec(bucket_src.group(1), scope)
    examples: list[tuple[str, str]] = []
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        cmd: str | None = None
        out: list[str] = []
        for line in block.splitlines():
            if line.startswith("$ "):
                if cmd is not None:
                    examples.append((cmd, "\n".join(out)))
                cmd, out = line[2:], []
            else:
                out.append(line)
        if cmd is not None:
            examples.append((cmd, "\n".join(out)))
    return scope["BUCKET"], examples


def test_semantics_examples(world: World) -> None:
    objects, examples = _semantics_examples()
    assert len(examples) >= 10
    world.put_many({f"semantics/{k}": v for k, v in objects.items()})
    where = world.mount(f"blob:{world.bucket}/semantics", world.tmp / "semantics")
    try:
        for cmd, expected in examples:
            proc = subprocess.run(
                cmd,
                shell=True,
                capture_output=True,
                text=True,
                env=dict(os.environ, MNT=str(where), LC_ALL="C"),
            )
            got = (proc.stdout + proc.stderr).replace(str(where), "$MNT").strip()
            assert got == expected.strip(), f"$ {cmd}"
    finally:
        world.umount(where)


ODD_KEYS = {
    "odd/a//b": b"empty component",
    "odd//leading": b"empty component",
    "odd/c/./d": b"dot",
    "odd/c/../e": b"dotdot",
    "odd/long/" + "n" * 256: b"too long",
    "odd/both": b"hidden file",
    "odd/both/inner": b"inner",
    "odd/fine": b"fine",
}


def test_odd_keys(world: World, mnt: Path) -> None:
    """Put every odd key the store accepts; the mount shows only representable names."""

    async def put_what_fits(store: Any) -> list[str]:
        accepted = []
        for key, data in ODD_KEYS.items():
            try:
                await store.put(key, data)
                accepted.append(key)
            except Exception:
                pass  # SeaweedFS refuses `.`/`..` and long components
        return accepted

    accepted = world.sdk(put_what_fits)
    assert "odd/fine" in accepted
    time.sleep(1.2)
    names = sorted(os.listdir(mnt / "odd"))
    # Stores and HTTP clients normalise some keys on the way in: SeaweedFS folds "//" into
    # "/" ("leading" becomes a plain file) and "c/../e" may arrive as "e".
    assert set(names) <= {"a", "both", "c", "e", "fine", "long", "leading"}
    assert {"both", "fine"} <= set(names)
    assert (mnt / "odd" / "both").is_dir()
    assert (mnt / "odd" / "both" / "inner").read_bytes() == b"inner"
    for sub in ("a", "c", "long"):
        if sub in names:
            for name in os.listdir(mnt / "odd" / sub):
                assert name not in ("", ".", "..") and len(name.encode()) <= 255
    found = sh(f"find {mnt}/odd -type f | sort").split()
    assert f"{mnt}/odd/fine" in found and f"{mnt}/odd/both/inner" in found


# -- lifecycle ----------------------------------------------------------------------------------


def test_mount_failures_have_clear_messages(world: World, mnt: Path) -> None:
    def fails(*args: str, env: dict[str, str] | None = None) -> str:
        proc = subprocess.run(
            [BLOBFS, "mount", *args],
            env=env or world.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        return lines[0]

    target = world.tmp / "fail"
    target.mkdir(exist_ok=True)
    assert "unknown bucket" in fails("blob:no-such-bucket", str(target))
    assert "does not exist" in fails(f"blob:{world.bucket}", str(world.tmp / "missing"))
    (world.tmp / "afile").write_text("")
    assert "is not a directory" in fails(f"blob:{world.bucket}", str(world.tmp / "afile"))
    assert "already mounted" in fails(f"blob:{world.bucket}", str(mnt))
    usage = world.blobfs("mount", f"blob:{world.bucket}", str(target), "-o", "bogus")
    assert usage.returncode == 2 and "unknown mount option 'bogus'" in usage.stderr

    # Refused credentials: the same cluster name with a wrong secret.
    cluster = world.config.cluster()
    bad = dict(cluster.credentials)
    secret = "account_key" if world.kind == "azure" else "secret_access_key"
    bad[secret] = (
        "d3Jvbmd3cm9uZ3dyb25nd3Jvbmd3cm9uZ3dyb25nd3Jvbmd3cm9uZw=="
        if world.kind == "azure"
        else "wrong-secret"
    )
    from dataclasses import replace

    bad_config = replace(world.config, path=world.tmp / "bad.toml").with_cluster(
        replace(cluster, credentials=bad)
    )
    bad_config.save()
    env = dict(world.env, BLOBFS_CONFIG=str(world.tmp / "bad.toml"))
    assert "credentials refused" in fails(f"blob:{world.bucket}", str(target), env=env)

    # FUSE unavailable: in a private mount namespace /dev/fuse is not the device.
    fake = world.tmp / "not-fuse"
    fake.write_text("")
    proc = subprocess.run(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            f'mount --bind {fake} /dev/fuse && exec "$@"',
            "sh",
            BLOBFS,
            "mount",
            f"blob:{world.bucket}",
            str(target),
        ],
        env=world.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "FUSE is unavailable" in proc.stderr
    assert not mountpoint.is_mounted(target)


def test_sigterm_unmounts_cleanly(world: World) -> None:
    where = world.mount(f"blob:{world.bucket}", world.tmp / "sigterm")
    pid = mountpoint.read_pid(where)
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    world.mounts.remove(where)
    assert_gone(where, pid)


def test_killed_daemon_leaves_a_mount_that_umount_clears(world: World) -> None:
    where = world.mount(f"blob:{world.bucket}", world.tmp / "killed")
    pid = mountpoint.read_pid(where)
    assert pid is not None
    holder = subprocess.Popen(["sleep", "60"], cwd=where)  # a shell left in the mount
    try:
        os.kill(pid, signal.SIGKILL)
        assert_gone_pid = time.monotonic() + 10
        while mountpoint._alive(pid) and time.monotonic() < assert_gone_pid:
            time.sleep(0.05)
        proc = world.blobfs("mount", f"blob:{world.bucket}", str(where))
        assert proc.returncode != 0 and "dead FUSE mount" in proc.stderr
        # Busy: the refusal names who holds it and what to do.
        busy = world.blobfs("umount", str(where))
        assert busy.returncode != 0
        assert f"pid {holder.pid} (sleep: current directory)" in busy.stderr, busy.stderr
        assert f"blobfs umount -z {where}" in busy.stderr and "daemon is gone" in busy.stderr
        # blobfs status names the dead mount and what to do.
        proc = world.blobfs("status", str(where))
        assert proc.returncode == 1 and "is not running (a dead mount" in proc.stderr, proc.stderr
    finally:
        holder.kill()
        holder.wait()
    world.umount(where)
    # And the mount point is usable again.
    world.mount(f"blob:{world.bucket}", where)
    assert (where / "top.txt").read_bytes() == b"top\n"
    world.umount(where)


def test_fstab_and_mount_helper(world: World) -> None:
    subprocess.run([BLOBFS, "install-helper"], check=True, capture_output=True, env=world.env)
    assert os.path.exists("/sbin/mount.fuse.blobfs")
    where = world.tmp / "fstab"
    where.mkdir(exist_ok=True)
    helper_opts = (
        f"_netdev,nofail,x-systemd.automount,defaults,config={world.env['BLOBFS_CONFIG']},"
        f"data_dir={world.env['BLOBFS_DATA_DIR']},{FAST}"
    )
    proc = subprocess.run(
        ["mount", "-t", "fuse.blobfs", f"blob:{world.bucket}", str(where), "-o", helper_opts],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    pid = mountpoint.read_pid(where)
    try:
        assert (where / "top.txt").read_bytes() == b"top\n"
        assert any(
            ln.split()[1] == str(where) and ln.split()[2] == "fuse.blobfs"
            for ln in open("/proc/mounts")
        )
    finally:
        subprocess.run(["umount", str(where)], check=True)
    assert_gone(where, pid)

    fstab = world.tmp / "fstab.txt"
    fstab.write_text(f"blob:{world.bucket}  {where}  fuse.blobfs  {helper_opts}  0  0\n")
    proc = subprocess.run(
        ["mount", "--fstab", str(fstab), str(where)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    pid = mountpoint.read_pid(where)
    assert sorted(os.listdir(where / "pre")) == ["inner", "y.txt"]
    world.mounts.append(where)
    world.umount(where)
    assert_gone(where, pid)


# -- systemd ------------------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/usr/bin/systemd-analyze"), reason="no systemd-analyze")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = (REPO / "systemd" / "blobfs@.service").read_text()
    # verify checks that ExecStart exists: point it at this environment's blobfs.
    (tmp_path / "blobfs@.service").write_text(unit.replace("/usr/local/bin/blobfs", BLOBFS))
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "blobfs@.service")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Type=notify" in unit and "network-online.target" in unit
