""":class:`Transfers`, the public entry point: argument checks, then the primitives."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
from collections.abc import Set as AbstractSet
from pathlib import Path

from yarl import URL

from sdk.errors import ResourceNotFound
from sdk.filters import AsyncFilterFunc, always, read_parent_ignore_files
from sdk.progress import (
    AbstractFileProgress,
    AbstractRecursiveFileProgress,
)
from sdk.transfer.common import (
    NO_PROGRESS,
    Resolver,
    dir_prefix,
    local_path,
)
from sdk.transfer.download import DownloadWalk, get_file, has_keys, plan_download
from sdk.transfer.local import (
    make_local_dir,
    stat_source,
)
from sdk.transfer.tree import Dir, Tree
from sdk.transfer.upload import UploadWalk, put_file, remote_up_to_date


class Transfers:
    """Copies between local ``file:`` URLs and blob URIs, resolved with ``resolve``."""

    def __init__(self, resolve: Resolver) -> None:
        self._resolve = resolve

    # -- single files ----------------------------------------------------------------------------

    async def upload_file(
        self,
        src: URL,
        dst: URL,
        *,
        update: bool = False,
        progress: AbstractFileProgress | None = None,
    ) -> None:
        """Upload local file ``src`` to blob ``dst``.

        With ``update``, upload only if the blob is missing or older than the file.

        :raises FileNotFoundError: ``src`` does not exist.
        :raises IsADirectoryError: ``src`` is a directory ("use recursive copy"), or ``dst``
            names a folder (ends with ``/``, the bucket root, or a prefix holding blobs).
        """
        path = local_path(src)
        st = await asyncio.to_thread(stat_source, path)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory, use recursive copy", str(path))
        _, store, key = await self._resolve(dst)
        if not key or key.endswith("/"):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", str(dst))
        async for _ in store.list(key + "/"):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", str(dst))
        if update and await remote_up_to_date(store, key, st.st_mtime_ns, st.st_size):
            return
        await put_file(store, key, path, src, dst, progress or NO_PROGRESS)

    async def download_file(
        self,
        src: URL,
        dst: URL,
        *,
        update: bool = False,
        continue_: bool = False,
        progress: AbstractFileProgress | None = None,
    ) -> None:
        """Download blob ``src`` to local file ``dst``.

        With ``update``, download only if the file is missing or older than the blob.  With
        ``continue_``, a destination that is newer than the blob and shorter is completed
        by appending the missing tail, one of the same size is left alone, and anything
        else is downloaded whole.

        :raises FileNotFoundError: ``src`` does not exist (or ``dst``'s directory does not).
        :raises IsADirectoryError: ``src`` is a folder ("use recursive copy") or ``dst`` is
            a directory.
        """
        path = local_path(dst)
        _, store, key = await self._resolve(src)
        if not key or key.endswith("/"):
            raise IsADirectoryError(errno.EISDIR, "Is a directory, use recursive copy", str(src))
        try:
            info = await store.head(key)
        except ResourceNotFound:
            async for _ in store.list(key + "/"):
                raise IsADirectoryError(
                    errno.EISDIR, "Is a directory, use recursive copy", str(src)
                ) from None
            raise FileNotFoundError(errno.ENOENT, "No such file", str(src)) from None
        plan = await asyncio.to_thread(
            plan_download, path, info, update=update, continue_=continue_
        )
        if plan is not None:
            await get_file(store, info, path, plan, src, dst, progress or NO_PROGRESS)

    # -- trees -----------------------------------------------------------------------------------

    async def upload_dir(
        self,
        src: URL,
        dst: URL,
        *,
        update: bool = False,
        filter: AsyncFilterFunc | None = None,
        ignore_file_names: AbstractSet[str] = frozenset(),
        progress: AbstractRecursiveFileProgress | None = None,
    ) -> None:
        """Upload local directory ``src`` recursively to the blob folder ``dst``.

        ``filter`` is called with each entry's path relative to ``src`` (``/``-separated,
        directories ending with ``/``) and skips it when false.  Files named in
        ``ignore_file_names`` (in ``src``, its subdirectories and the directories above it)
        add ``.gitignore``-style patterns for their directory.  Every directory gets a
        marker blob ``dir/`` so empty ones survive.

        :raises FileNotFoundError: ``src`` does not exist.
        :raises NotADirectoryError: ``src`` is not a directory, or ``dst`` is a blob.
        :raises IncompleteTransfer: some entries failed (each was reported with ``fail``).
        """
        root = local_path(src)
        st = await asyncio.to_thread(stat_source, root)
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(root))
        _, store, key = await self._resolve(dst)
        prefix = dir_prefix(key)
        if prefix:
            with contextlib.suppress(ResourceNotFound):
                await store.head(prefix[:-1])
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(dst))
        base = filter or always
        names = frozenset(ignore_file_names)
        if names:
            base = await asyncio.to_thread(read_parent_ignore_files, root, names, base)
        tree = Tree(src, dst, progress or NO_PROGRESS)
        walker = UploadWalk(tree, store, update=update, ignore_file_names=names)
        root_id = frozenset({(st.st_dev, st.st_ino)})
        await tree.run(
            lambda tg: walker.walk(tg, root, prefix, "", Dir(src, dst, None), base, root_id)
        )

    async def download_dir(
        self,
        src: URL,
        dst: URL,
        *,
        update: bool = False,
        continue_: bool = False,
        filter: AsyncFilterFunc | None = None,
        progress: AbstractRecursiveFileProgress | None = None,
    ) -> None:
        """Download the blob folder ``src`` recursively into local directory ``dst``.

        ``dst`` is created if missing (its parent must exist).  ``update``, ``continue_``
        and ``filter`` work as for :meth:`download_file` and :meth:`upload_dir`; folder
        markers become (possibly empty) directories.  Nothing is written outside ``dst``:
        keys whose names cannot be local ones (``..``, empty, over-long ...) and targets a
        symbolic link leads out of ``dst`` are refused, each reported with ``fail``
        (:mod:`sdk.transfer.names`).

        :raises FileNotFoundError: nothing exists under ``src``.
        :raises NotADirectoryError: ``src`` is a blob, or ``dst`` is not a directory.
        :raises IncompleteTransfer: some entries failed (each was reported with ``fail``).
        """
        root = local_path(dst)
        _, store, key = await self._resolve(src)
        prefix = dir_prefix(key)
        if prefix and not await has_keys(store, prefix):
            try:
                await store.head(prefix[:-1])
            except ResourceNotFound:
                raise FileNotFoundError(errno.ENOENT, "No such directory", str(src)) from None
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(src))
        await asyncio.to_thread(make_local_dir, root)
        resolved = Path(await asyncio.to_thread(os.path.realpath, root))
        tree = Tree(src, dst, progress or NO_PROGRESS)
        walker = DownloadWalk(tree, store, update=update, continue_=continue_, root=resolved)
        await tree.run(
            lambda tg: walker.walk(tg, prefix, root, "", Dir(src, dst, None), filter or always)
        )
