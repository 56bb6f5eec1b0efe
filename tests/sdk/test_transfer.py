"""File and tree transfers (:mod:`sdk.transfer`), each body run against every store kind."""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from sdk import retry
from sdk.filters import FileFilter
from sdk.progress import (
    AbstractRecursiveFileProgress,
    StorageProgressComplete,
    StorageProgressEnterDir,
    StorageProgressFail,
    StorageProgressLeaveDir,
    StorageProgressStart,
    StorageProgressStep,
)
from sdk.providers.base import BlobStore, ObjectInfo
from sdk.transfer import (
    MAX_OPEN_FILES,
    MTIME_KEY,
    PART_SIZE,
    IncompleteTransfer,
    Transfers,
    check_continue_supported,
)
from sdk.transfer.names import unsafe_name
from sdk.types import Bucket, Provider

pytestmark = pytest.mark.asyncio

MiB = 1024 * 1024
BIG = PART_SIZE * 2 + 12345  # three parts, the last one short


def blob(key: str) -> URL:
    return URL.build(scheme="blob", path="bkt/" + key)


def local(path: Path) -> URL:
    return URL(path.as_uri())


@pytest.fixture
def transfers(store: BlobStore) -> Transfers:
    bucket = Bucket(
        id="bucket-test",
        owner="alice",
        cluster_name="test",
        provider=Provider.S3,
        created_at=datetime.now(UTC),
        imported=False,
        name="bkt",
    )

    async def resolve(uri: URL) -> tuple[Bucket, BlobStore, str]:
        assert uri.scheme == "blob"
        _, _, key = uri.path.partition("/")
        return bucket, store, key

    return Transfers(resolve)


@dataclass
class Recorder(AbstractRecursiveFileProgress):
    """Records every event; tracks how many files are between start and complete."""

    events: list[object] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    on_step: Callable[[StorageProgressStep], None] | None = None

    def start(self, data: StorageProgressStart) -> None:
        self.events.append(data)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def complete(self, data: StorageProgressComplete) -> None:
        self.events.append(data)
        self.in_flight -= 1

    def step(self, data: StorageProgressStep) -> None:
        self.events.append(data)
        if self.on_step:
            self.on_step(data)

    def enter(self, data: StorageProgressEnterDir) -> None:
        self.events.append(data)

    def leave(self, data: StorageProgressLeaveDir) -> None:
        self.events.append(data)

    def fail(self, data: StorageProgressFail) -> None:
        self.events.append(data)
        self.in_flight = 0  # a failed file may never complete

    def of(self, kind: type) -> list:  # type: ignore[type-arg]
        return [e for e in self.events if isinstance(e, kind)]


async def read_blob(store: BlobStore, key: str) -> bytes:
    async with store.read(key) as chunks:
        return b"".join([c async for c in chunks])


async def keys(store: BlobStore, prefix: str = "") -> list[str]:
    return sorted([e.key async for e in store.list(prefix)])


def tree_files(root: Path) -> dict[str, bytes | None]:
    """Relative path -> content (``None`` for directories), for comparing trees."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root) + "/"] = None
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = Path(p).read_bytes()
    return out


def make_tree(root: Path) -> None:
    (root / "empty").mkdir(parents=True)
    (root / "deep/er/est").mkdir(parents=True)
    (root / "deep/er/est/leaf.txt").write_text("leaf")
    (root / "naïve café").mkdir()
    (root / "naïve café/spaced name.txt").write_text("unicode and spaces")
    (root / "日本語.bin").write_bytes(os.urandom(1000))
    (root / "zero").write_bytes(b"")
    (root / "big.bin").write_bytes(os.urandom(BIG))


def set_mtime(path: Path, when: float) -> None:
    os.utime(path, (when, when))


# -- single files -------------------------------------------------------------------------------


async def test_file_round_trip_small_and_multipart(
    transfers: Transfers, store: BlobStore, tmp_path: Path
) -> None:
    for name, data in (("small", b"hello"), ("empty", b""), ("big", os.urandom(BIG))):
        src = tmp_path / name
        src.write_bytes(data)
        set_mtime(src, 1_600_000_000.25)
        await transfers.upload_file(local(src), blob(f"dir/{name}"))
        assert await read_blob(store, f"dir/{name}") == data
        info = await store.head(f"dir/{name}")
        assert info.size == len(data)
        assert float(info.metadata[MTIME_KEY]) == pytest.approx(1_600_000_000.25)

        out = tmp_path / f"{name}.out"
        await transfers.download_file(blob(f"dir/{name}"), local(out))
        assert out.read_bytes() == data
        # the blob's mtime is given back, so update comparisons work both ways
        assert out.stat().st_mtime == pytest.approx(1_600_000_000.25)
    assert [n for n in os.listdir(tmp_path) if ".blobfs-" in n] == []


async def test_file_progress_events(transfers: Transfers, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(os.urandom(BIG))
    for direction in ("up", "down"):
        rec = Recorder()
        if direction == "up":
            await transfers.upload_file(local(src), blob("f"), progress=rec)
        else:
            await transfers.download_file(blob("f"), local(tmp_path / "g"), progress=rec)
        assert isinstance(rec.events[0], StorageProgressStart)
        assert rec.events[0].size == BIG
        assert isinstance(rec.events[-1], StorageProgressComplete)
        steps = rec.of(StorageProgressStep)
        assert steps and steps[-1].current == BIG
        assert [s.current for s in steps] == sorted(s.current for s in steps)


async def test_file_errors(transfers: Transfers, store: BlobStore, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as fnf:
        await transfers.upload_file(local(tmp_path / "missing"), blob("x"))
    assert fnf.value.errno == errno.ENOENT and fnf.value.filename == str(tmp_path / "missing")
    with pytest.raises(IsADirectoryError, match="use recursive copy"):
        await transfers.upload_file(local(tmp_path), blob("x"))
    (tmp_path / "f").write_text("x")
    with pytest.raises(IsADirectoryError):
        await transfers.upload_file(local(tmp_path / "f"), blob("folder/"))
    await store.put("folder/inside", b"x")
    with pytest.raises(IsADirectoryError):  # a prefix holding blobs is a folder
        await transfers.upload_file(local(tmp_path / "f"), blob("folder"))

    with pytest.raises(FileNotFoundError):
        await transfers.download_file(blob("nothing"), local(tmp_path / "out"))
    with pytest.raises(IsADirectoryError, match="use recursive copy"):
        await transfers.download_file(blob("folder"), local(tmp_path / "out"))
    with pytest.raises(IsADirectoryError, match="use recursive copy"):
        await transfers.download_file(blob("folder/"), local(tmp_path / "out"))
    with pytest.raises(IsADirectoryError):
        await transfers.download_file(blob("folder/inside"), local(tmp_path))
    with pytest.raises(FileNotFoundError):
        await transfers.download_file(blob("folder/inside"), local(tmp_path / "no/such/dir"))

    with pytest.raises(ValueError, match="continuation"):
        check_continue_supported(local(tmp_path / "f"), blob("x"))
    check_continue_supported(blob("x"), local(tmp_path / "f"))


async def test_upload_update_skips_unchanged(
    transfers: Transfers, store: BlobStore, tmp_path: Path
) -> None:
    src = tmp_path / "f"
    src.write_text("one")
    await transfers.upload_file(local(src), blob("f"), update=True)
    first = await store.head("f")

    rec = Recorder()
    await transfers.upload_file(local(src), blob("f"), update=True, progress=rec)
    assert rec.events == []  # unchanged: skipped
    assert (await store.head("f")).etag == first.etag

    src.write_text("two, longer")
    set_mtime(src, time.time() + 10)  # clearly newer than the blob
    await transfers.upload_file(local(src), blob("f"), update=True)
    assert await read_blob(store, "f") == b"two, longer"

    # an older local file does not replace a newer blob
    src.write_text("three")
    set_mtime(src, 1_000_000_000)
    await transfers.upload_file(local(src), blob("f"), update=True)
    assert await read_blob(store, "f") == b"two, longer"


async def test_download_update(transfers: Transfers, store: BlobStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_text("v1")
    await transfers.upload_file(local(src), blob("f"))
    out = tmp_path / "out"
    await transfers.download_file(blob("f"), local(out), update=True)
    assert out.read_text() == "v1"

    out.write_text("local edit")
    set_mtime(out, time.time() + 10)  # clearly newer than the blob
    await transfers.download_file(blob("f"), local(out), update=True)
    assert out.read_text() == "local edit"

    set_mtime(out, 1_000_000_000)  # now older than the blob
    await transfers.download_file(blob("f"), local(out), update=True)
    assert out.read_text() == "v1"

    rec = Recorder()
    await transfers.download_file(blob("f"), local(out), update=True, progress=rec)
    assert rec.events == []


async def test_download_continue_appends_tail(
    transfers: Transfers, store: BlobStore, tmp_path: Path
) -> None:
    data = os.urandom(BIG)
    src = tmp_path / "src"
    src.write_bytes(data)
    set_mtime(src, 1_600_000_000)
    await transfers.upload_file(local(src), blob("f"))

    # A partial copy newer than the blob: only the tail is fetched, the head is kept
    # (marked here so a full re-download would show).
    out = tmp_path / "out"
    cut = PART_SIZE + 1000
    out.write_bytes(b"\0" * cut)
    rec = Recorder()
    await transfers.download_file(blob("f"), local(out), continue_=True, progress=rec)
    got = out.read_bytes()
    assert got[:cut] == b"\0" * cut and got[cut:] == data[cut:]
    assert rec.of(StorageProgressStep)[0].current > cut

    # Same size and not older: nothing to do.
    rec = Recorder()
    await transfers.download_file(blob("f"), local(out), continue_=True, progress=rec)
    assert rec.events == []

    # Older than the blob: the whole file is fetched again.
    out.write_bytes(b"\0" * cut)
    set_mtime(out, 1_000_000_000)
    await transfers.download_file(blob("f"), local(out), continue_=True)
    assert out.read_bytes() == data

    # Longer than the blob: whole file again.
    out.write_bytes(data + b"junk")
    await transfers.download_file(blob("f"), local(out), continue_=True)
    assert out.read_bytes() == data


class Boom(Exception):
    pass


async def test_interrupted_download_leaves_nothing_under_final_name(
    transfers: Transfers, store: BlobStore, tmp_path: Path
) -> None:
    data = os.urandom(BIG)
    src = tmp_path / "src"
    src.write_bytes(data)
    await transfers.upload_file(local(src), blob("f"))
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def explode(step: StorageProgressStep) -> None:
        raise Boom("connection lost")

    with pytest.raises(Boom):
        await transfers.download_file(
            blob("f"), local(out_dir / "f"), progress=Recorder(on_step=explode)
        )
    assert list(out_dir.iterdir()) == []  # no truncated file, no temporary left

    # An existing file is untouched by a failed replacement.
    (out_dir / "f").write_text("previous")
    with pytest.raises(Boom):
        await transfers.download_file(
            blob("f"), local(out_dir / "f"), progress=Recorder(on_step=explode)
        )
    assert [p.name for p in out_dir.iterdir()] == ["f"]
    assert (out_dir / "f").read_text() == "previous"


async def test_interrupted_continue_download_resumes(
    transfers: Transfers, store: BlobStore, tmp_path: Path
) -> None:
    data = os.urandom(BIG)
    src = tmp_path / "src"
    src.write_bytes(data)
    set_mtime(src, 1_600_000_000)
    await transfers.upload_file(local(src), blob("f"))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    seen: list[int] = []

    def cut_after_first_part(step: StorageProgressStep) -> None:
        seen.append(step.current)
        if step.current >= PART_SIZE:
            raise Boom("interrupted")

    with pytest.raises(Boom):
        await transfers.download_file(
            blob("f"),
            local(out_dir / "f"),
            continue_=True,
            progress=Recorder(on_step=cut_after_first_part),
        )
    # Nothing under the final name; a resumable, in-order partial file instead.
    names = [p.name for p in out_dir.iterdir()]
    assert names == [".f.blobfs-part"]
    partial = (out_dir / ".f.blobfs-part").read_bytes()
    assert 0 < len(partial) < BIG and partial == data[: len(partial)]

    rec = Recorder()
    await transfers.download_file(blob("f"), local(out_dir / "f"), continue_=True, progress=rec)
    assert (out_dir / "f").read_bytes() == data
    assert [p.name for p in out_dir.iterdir()] == ["f"]
    assert rec.of(StorageProgressStep)[0].current > len(partial)  # only the tail came


class ReadCounter:
    """A store that records the reads made through it and how many ranges overlap."""

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        self.streams: list[tuple[str, int]] = []
        self.ranges: list[tuple[int, int]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def read(self, key: str, offset: int = 0, length: int | None = None, **kw: Any) -> Any:
        self.streams.append((key, offset))
        return self._store.read(key, offset, length, **kw)

    async def read_view(self, key: str, offset: int, length: int, **kw: Any) -> memoryview:
        self.ranges.append((offset, length))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            # Let every range already started begin before this one ends, whatever the
            # store: overlap is then visible without depending on timing.
            await asyncio.sleep(0)
            return await self._store.read_view(key, offset, length, **kw)
        finally:
            self.in_flight -= 1


async def test_download_continue_fetches_the_tail_as_parallel_ranges(
    transfers: Transfers, store: BlobStore, tmp_path: Path
) -> None:
    data = os.urandom(3 * PART_SIZE + 4321)
    src = tmp_path / "src"
    src.write_bytes(data)
    set_mtime(src, 1_600_000_000)
    await transfers.upload_file(local(src), blob("f"))

    out = tmp_path / "out"
    cut = 1000
    out.write_bytes(data[:cut])  # a partial copy newer than the blob: resumable
    counter = ReadCounter(store)

    async def resolve(uri: URL) -> tuple[Bucket, BlobStore, str]:
        bucket, _, key = await transfers._resolve(uri)
        return bucket, counter, key  # type: ignore[return-value]

    rec = Recorder()
    await Transfers(resolve).download_file(blob("f"), local(out), continue_=True, progress=rec)
    assert out.read_bytes() == data
    # The tail came as ranged reads of whole parts from the cut on, several at once, as a
    # fresh download's parts do -- not as one stream.
    assert counter.streams == []
    expected = [(o, min(PART_SIZE, len(data) - o)) for o in range(cut, len(data), PART_SIZE)]
    assert sorted(counter.ranges) == expected
    assert counter.max_in_flight > 1
    steps = [e.current for e in rec.of(StorageProgressStep)]
    assert steps == sorted(steps) and steps[0] > cut and steps[-1] == len(data)


# -- trees --------------------------------------------------------------------------------------


async def test_tree_round_trip(transfers: Transfers, store: BlobStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    rec = Recorder()
    await transfers.upload_dir(local(src), blob("up"), progress=rec)
    all_keys = await keys(store)
    for marker in ("up/", "up/empty/", "up/deep/", "up/deep/er/", "up/deep/er/est/"):
        assert marker in all_keys
    assert "up/naïve café/spaced name.txt" in all_keys
    assert len(rec.of(StorageProgressEnterDir)) == len(rec.of(StorageProgressLeaveDir)) == 6
    assert len(rec.of(StorageProgressStart)) == len(rec.of(StorageProgressComplete)) == 5
    assert isinstance(rec.events[0], StorageProgressEnterDir)
    assert rec.events[-1] == StorageProgressLeaveDir(local(src), blob("up"))

    dst = tmp_path / "dst"
    rec = Recorder()
    await transfers.download_dir(blob("up"), local(dst), progress=rec)
    assert tree_files(dst) == tree_files(src)
    assert (dst / "big.bin").stat().st_mtime == pytest.approx((src / "big.bin").stat().st_mtime)
    assert rec.of(StorageProgressFail) == []
    assert len(rec.of(StorageProgressEnterDir)) == len(rec.of(StorageProgressLeaveDir)) == 6

    # the trailing slash does not matter, nor does downloading into an existing directory
    await transfers.download_dir(blob("up/"), local(dst))
    assert tree_files(dst) == tree_files(src)


async def test_tree_to_bucket_root_and_back(
    transfers: Transfers, store: BlobStore, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    make_tree(src)
    await transfers.upload_dir(local(src), blob(""))
    assert "empty/" in await keys(store) and "" not in await keys(store)
    await transfers.download_dir(blob(""), local(tmp_path / "dst"))
    assert tree_files(tmp_path / "dst") == tree_files(src)


async def test_tree_errors(transfers: Transfers, store: BlobStore, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await transfers.upload_dir(local(tmp_path / "missing"), blob("x"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        await transfers.upload_dir(local(tmp_path / "file"), blob("x"))
    await store.put("blob", b"x")
    with pytest.raises(NotADirectoryError):
        await transfers.upload_dir(local(tmp_path), blob("blob"))
    with pytest.raises(NotADirectoryError):
        await transfers.download_dir(blob("blob"), local(tmp_path / "out"))
    with pytest.raises(FileNotFoundError):
        await transfers.download_dir(blob("nothing"), local(tmp_path / "out"))
    await store.put("d/x", b"x")
    with pytest.raises(NotADirectoryError):
        await transfers.download_dir(blob("d"), local(tmp_path / "file"))
    with pytest.raises(FileNotFoundError):
        await transfers.download_dir(blob("d"), local(tmp_path / "no/such/parent"))


async def test_tree_failure_is_reported_and_the_rest_copied(
    transfers: Transfers, store: BlobStore, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    make_tree(src)
    (src / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(src / "fifo")
    rec = Recorder()
    with pytest.raises(IncompleteTransfer) as info:
        await transfers.upload_dir(local(src), blob("up"), progress=rec)
    failed = {Path(f.src.path).name for f in rec.of(StorageProgressFail)}
    assert failed == {"dangling", "fifo"}
    assert len(info.value.failures) == 2
    assert "up/big.bin" in await keys(store)
    assert len(rec.of(StorageProgressComplete)) == 5
    assert len(rec.of(StorageProgressEnterDir)) == len(rec.of(StorageProgressLeaveDir))

    # A blob whose local name is taken by a directory fails alone on the way down.
    dst = tmp_path / "dst"
    (dst / "zero").mkdir(parents=True)
    rec = Recorder()
    with pytest.raises(IncompleteTransfer):
        await transfers.download_dir(blob("up"), local(dst), progress=rec)
    assert [Path(f.dst.path).name for f in rec.of(StorageProgressFail)] == ["zero"]
    assert (dst / "big.bin").read_bytes() == (src / "big.bin").read_bytes()


async def test_tree_update_and_continue(
    transfers: Transfers, store: BlobStore, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    make_tree(src)
    await transfers.upload_dir(local(src), blob("up"), update=True)
    rec = Recorder()
    await transfers.upload_dir(local(src), blob("up"), update=True, progress=rec)
    assert rec.of(StorageProgressStart) == []

    (src / "deep/er/est/leaf.txt").write_text("changed leaf")
    set_mtime(src / "deep/er/est/leaf.txt", time.time() + 10)
    rec = Recorder()
    await transfers.upload_dir(local(src), blob("up"), update=True, progress=rec)
    assert [Path(s.src.path).name for s in rec.of(StorageProgressStart)] == ["leaf.txt"]

    # update into a directory that does not exist yet (an upstream quirk) works
    dst = tmp_path / "dst"
    await transfers.download_dir(blob("up"), local(dst), update=True)
    assert tree_files(dst) == tree_files(src)
    rec = Recorder()
    await transfers.download_dir(blob("up"), local(dst), update=True, progress=rec)
    assert rec.of(StorageProgressStart) == []

    # continue: complete files are skipped, a cut-short one gets its tail
    big = (dst / "big.bin").read_bytes()
    (dst / "big.bin").write_bytes(big[: PART_SIZE // 2])
    rec = Recorder()
    await transfers.download_dir(blob("up"), local(dst), continue_=True, progress=rec)
    assert [Path(s.dst.path).name for s in rec.of(StorageProgressStart)] == ["big.bin"]
    assert tree_files(dst) == tree_files(src)


async def test_tree_filter_gets_relative_paths(
    transfers: Transfers, store: BlobStore, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    make_tree(src)
    asked: list[str] = []

    async def no_deep(path: str) -> bool:
        asked.append(path)
        return path != "deep/" and not path.endswith(".bin")

    await transfers.upload_dir(local(src), blob("up"), filter=no_deep)
    assert "deep/" in asked and "naïve café/spaced name.txt" in asked and "empty/" in asked
    assert not any(p.startswith("deep/er") for p in asked)  # skipped directories are not walked
    assert await keys(store) == [
        "up/",
        "up/empty/",
        "up/naïve café/",
        "up/naïve café/spaced name.txt",
        "up/zero",
    ]

    await transfers.upload_dir(local(src), blob("all"))
    asked.clear()
    await transfers.download_dir(blob("all"), local(tmp_path / "dst"), filter=no_deep)
    assert "deep/" in asked
    assert sorted(tree_files(tmp_path / "dst")) == [
        "empty/",
        "naïve café/",
        "naïve café/spaced name.txt",
        "zero",
    ]


async def test_ignore_files_chain_per_directory(
    transfers: Transfers, store: BlobStore, tmp_path: Path
) -> None:
    top = tmp_path / "project"
    src = top / "src"
    (src / "sub/build").mkdir(parents=True)
    (src / "other/build").mkdir(parents=True)
    (top / ".gitignore").write_text("*.tmp\n")  # above the transfer root: still applies
    (src / ".gitignore").write_bytes(b"\xef\xbb\xbf*.log\r\nbuild/\r\n/anchored.txt\r\n")
    (src / "sub/.gitignore").write_text("!keep.log\n!build/\n# comment\nlocal-only\n")
    for rel in (
        "a.log",
        "x.tmp",
        "anchored.txt",
        "keep.txt",
        "sub/a.log",
        "sub/keep.log",
        "sub/anchored.txt",
        "sub/local-only",
        "sub/build/out.o",
        "other/build/out.o",
        "other/local-only",
    ):
        (src / rel).write_text(rel)

    await transfers.upload_dir(local(src), blob("up"), ignore_file_names=frozenset({".gitignore"}))
    files = [k for k in await keys(store) if not k.endswith("/")]
    assert files == [
        "up/.gitignore",
        "up/keep.txt",
        "up/other/local-only",
        "up/sub/.gitignore",
        "up/sub/anchored.txt",
        "up/sub/build/out.o",
        "up/sub/keep.log",
    ]


async def test_file_filter_order_and_ignore_files_compose(
    transfers: Transfers, store: BlobStore, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.txt", "b.txt", "c.bin", "keep.bin"):
        (src / name).write_text(name)
    (src / ".blobfsignore").write_text("c.bin\n")
    cli = FileFilter()
    cli.exclude("*.bin")
    cli.include("keep.bin")
    cli.exclude("b.txt")
    await transfers.upload_dir(
        local(src), blob("up"), filter=cli.match, ignore_file_names=frozenset({".blobfsignore"})
    )
    assert [k for k in await keys(store) if not k.endswith("/")] == [
        "up/.blobfsignore",
        "up/a.txt",
        "up/keep.bin",
    ]


async def test_tree_bounded_open_files(
    transfers: Transfers, store: BlobStore, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    for d in range(5):
        (src / f"d{d}").mkdir(parents=True)
        for f in range(12):
            (src / f"d{d}/f{f}").write_bytes(os.urandom(2000))
    rec = Recorder()
    await transfers.upload_dir(local(src), blob("up"), progress=rec)
    assert len(rec.of(StorageProgressComplete)) == 60
    assert 1 < rec.max_in_flight <= MAX_OPEN_FILES
    rec = Recorder()
    await transfers.download_dir(blob("up"), local(tmp_path / "dst"), progress=rec)
    assert tree_files(tmp_path / "dst") == tree_files(src)
    assert 1 < rec.max_in_flight <= MAX_OPEN_FILES


async def test_download_dir_of_foreign_keys(
    transfers: Transfers, store: BlobStore, tmp_path: Path
) -> None:
    # Objects written by other tools: no markers, no mtime metadata.
    await store.put("foreign/a/b/c.txt", b"c")
    await store.put("foreign/top.txt", b"top")
    info = await store.head("foreign/top.txt")
    assert isinstance(info, ObjectInfo) and MTIME_KEY not in info.metadata
    await transfers.download_dir(blob("foreign"), local(tmp_path / "dst"))
    assert tree_files(tmp_path / "dst") == {
        "a/": None,
        "a/b/": None,
        "a/b/c.txt": b"c",
        "top.txt": b"top",
    }
    assert info.modified_at is not None
    assert abs((tmp_path / "dst/top.txt").stat().st_mtime - info.modified_at.timestamp()) < 2


async def test_cancellation_cleans_up(
    transfers: Transfers, store: BlobStore, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    make_tree(src)
    await transfers.upload_dir(local(src), blob("up"))
    dst = tmp_path / "dst"
    started = asyncio.Event()

    class Signal(Recorder):
        def step(self, data: StorageProgressStep) -> None:
            started.set()

    task = asyncio.create_task(transfers.download_dir(blob("up"), local(dst), progress=Signal()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    leftovers = [p for p in dst.rglob("*") if ".blobfs-" in p.name]
    assert leftovers == []


#: Keys no local name can be made of, and what a download must do with each: the mount's
#: rules (docs/SEMANTICS.md, "Keys that cannot be names") and the CLI's (docs/CLI.md).
HOSTILE = [
    "../escape-parent",
    "deep/../../escape-grandparent",
    "./dot",
    "double//slash",
    "/leading",
    "nul\0byte",
    "long-" + "x" * 300,
    "dir/" + "y" * 256 + "/below",
    "link/planted",  # the destination holds a symbolic link 'link' to a directory outside
]
#: Keys that download as they are (a backslash is an ordinary character on Linux; SeaweedFS
#: and Azurite store it as '/').
SAFE = ["ok.txt", "back\\slash", "dir/fine"]


async def _keys_or_none(store: BlobStore, *, attempts: int | None = None) -> set[str] | None:
    """Every key, or ``None`` if the store cannot list them (Azurite answers a listing that
    holds a NUL key with a 500).  ``attempts`` bounds the tries: a 500 is retried, 8 times
    in 9 s by default."""
    previous = retry.current_policy()
    if attempts is not None:
        retry.set_policy(replace(previous, attempts=attempts))
    try:
        return {info.key async for info in store.list()}
    except Exception:
        return None
    finally:
        retry.set_policy(previous)


async def test_hostile_keys_never_write_outside_the_destination(
    transfers: Transfers, store: BlobStore, tmp_path: Path
) -> None:
    for key in [*HOSTILE, *SAFE]:
        try:
            await store.put(key, key.encode(errors="replace"))
        except Exception:
            continue  # refused by this provider (SeaweedFS refuses '..', NUL ...)
        if "\0" in key and await _keys_or_none(store, attempts=1) is None:
            await store.delete(key)
    listed = await _keys_or_none(store)
    assert listed is not None
    safe = {
        k
        for k in listed
        if k.split("/")[0] != "link" and all(unsafe_name(part) is None for part in k.split("/"))
    }
    assert "ok.txt" in safe and len(safe) >= len(SAFE), sorted(listed)
    outside = tmp_path / "outside"
    outside.mkdir()
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "link").symlink_to(outside)
    before = tree_files(tmp_path)
    rec = Recorder()
    with pytest.raises(IncompleteTransfer) as raised:
        await transfers.download_dir(blob(""), local(dst), progress=rec)
    after = tree_files(tmp_path)
    new = {path: data for path, data in after.items() if before.get(path, 1) != data}
    files = {path: data for path, data in new.items() if data is not None}
    # Stores fold some keys ('a//b', '/a', '\\' become 'a/b', 'a', '/' on SeaweedFS).
    assert files == {f"dst/{k}": await read_blob(store, k) for k in safe}
    assert all(path.startswith("dst/") for path in new), sorted(new)
    assert list(outside.iterdir()) == []
    failed = {e.src.path for e in rec.of(StorageProgressFail)}
    assert len(failed) == len(raised.value.failures) >= 2
    messages = " ".join(e.message for e in rec.of(StorageProgressFail))
    assert "symbolic link leads outside the destination" in messages
    if "../escape-parent" in listed:  # the memory store and Azurite keep such keys
        assert "'..' cannot be a local file name" in messages
    if "double//slash" in listed or "/leading" in listed:
        assert "an empty name" in messages
    if "long-" + "x" * 300 in listed:
        assert "too long for a local file name" in messages
    if "nul\0byte" in listed:
        assert "no local file name can" in messages
