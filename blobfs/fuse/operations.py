"""The pyfuse3 adapter: kernel requests in, core calls out, errno back.

This is the only module that imports pyfuse3's request types and raises ``FUSEError``.  Each
handler converts arguments (bytes names, flag fields), calls
:class:`blobfs.fs.filesystem.Filesystem`, and turns the resulting
:class:`~blobfs.fs.inodes.Node` into ``EntryAttributes``.  Errors go
through :data:`ERRNO`, the one table from core exceptions to errno values; anything not in
it is a bug, logged with its traceback and reported as EIO so one bad request cannot take
the daemon (and with it the mount) down.
"""

from __future__ import annotations

import errno
import logging
import stat
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import cast

import pyfuse3
import trio

from blobfs import errors
from blobfs.fs.filesystem import Filesystem
from blobfs.fs.inodes import Kind, Node
from blobfs.fs.names import name_from_kernel

log = logging.getLogger(__name__)

#: Core exception -> errno.  The first matching class wins (subclasses before bases).
ERRNO: tuple[tuple[type[errors.FsError], int], ...] = (
    (errors.NotFound, errno.ENOENT),
    (errors.NotADirectory, errno.ENOTDIR),
    (errors.IsADirectory, errno.EISDIR),
    (errors.NameTooLong, errno.ENAMETOOLONG),
    (errors.InvalidName, errno.EINVAL),
    (errors.Stale, errno.ESTALE),
    (errors.ReadOnly, errno.EROFS),
    (errors.NotSupported, errno.EOPNOTSUPP),
    (errors.AccessDenied, errno.EACCES),
    (errors.BadHandle, errno.EBADF),
    (errors.NoAttribute, pyfuse3.ENOATTR),
    (errors.NotEmpty, errno.ENOTEMPTY),
    (errors.TooBig, errno.E2BIG),
    (errors.NoSpace, errno.ENOSPC),
    (errors.Exists, errno.EEXIST),
    (errors.StorageFailure, errno.EIO),
)


def errno_of(exc: errors.FsError) -> int:
    for cls, code in ERRNO:
        if isinstance(exc, cls):
            return code
    return errno.EIO


#: Answers too common to log above DEBUG.
_ROUTINE = (errno.ENOENT, pyfuse3.ENOATTR)


@asynccontextmanager
async def _errno(op: str, routine: tuple[int, ...] = _ROUTINE) -> AsyncIterator[None]:
    try:
        yield
    except errors.FsError as e:
        code = errno_of(e)
        level = logging.DEBUG if code in routine else logging.INFO
        log.log(level, "%s: %s: %s", op, type(e).__name__, e)
        raise pyfuse3.FUSEError(code) from e
    except pyfuse3.FUSEError:
        raise
    except trio.Cancelled:
        raise
    except Exception as e:
        log.exception("%s failed unexpectedly", op)
        raise pyfuse3.FUSEError(errno.EIO) from e


def _name(raw: bytes) -> str:
    name = name_from_kernel(raw)
    if name is None:
        # No key can hold a name that is not UTF-8, so it cannot exist.
        raise errors.NotFound(repr(raw))
    return name


class Operations(pyfuse3.Operations):
    """pyfuse3 handlers over a :class:`Filesystem`."""

    supports_dot_lookup = True
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, fs: Filesystem) -> None:
        super().__init__()
        self.fs = fs
        opts = fs.options
        # Read by pyfuse3.init() from the instance.
        self.enable_writeback_cache = opts.writeback_cache
        self.entry_ttl = opts.entry_ttl
        self.attr_ttl = opts.attr_ttl
        self.blksize = fs.cache.block_size

    # -- attributes ----------------------------------------------------------------------------

    def _attrs(self, node: Node) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = pyfuse3.InodeT(node.ino)
        a.generation = 0
        a.entry_timeout = self.entry_ttl
        a.attr_timeout = self.attr_ttl
        if node.kind is Kind.DIR:
            a.st_mode = pyfuse3.ModeT(stat.S_IFDIR | node.mode)
            # nlink 1 tells find(1) the subdirectory count is unknown (no leaf optimisation).
            a.st_nlink = 1
        else:
            a.st_mode = pyfuse3.ModeT(node.ftype | node.mode)
            a.st_nlink = 1
        a.st_uid = node.uid
        a.st_gid = node.gid
        a.st_rdev = node.rdev
        a.st_size = node.size
        a.st_blksize = self.blksize
        a.st_blocks = (node.size + 511) // 512
        a.st_atime_ns = node.atime_ns
        a.st_mtime_ns = node.mtime_ns
        a.st_ctime_ns = node.ctime_ns
        return a

    # -- names ---------------------------------------------------------------------------------

    async def lookup(
        self, parent_inode: pyfuse3.InodeT, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        async with _errno("lookup"):
            node = await self.fs.lookup(parent_inode, _name(name))
            return self._attrs(node)
        raise AssertionError("unreachable")

    async def forget(self, inode_list: Sequence[tuple[pyfuse3.InodeT, int]]) -> None:
        try:
            self.fs.forget(inode_list)
        except Exception:
            log.exception("forget failed")

    async def getattr(
        self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        async with _errno("getattr"):
            return self._attrs(await self.fs.getattr(inode))
        raise AssertionError("unreachable")

    async def setattr(
        self,
        inode: pyfuse3.InodeT,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: pyfuse3.FileHandleT | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        async with _errno("setattr"):
            node = await self.fs.setattr(
                inode,
                mode=attr.st_mode & 0o7777 if fields.update_mode else None,
                uid=attr.st_uid if fields.update_uid else None,
                gid=attr.st_gid if fields.update_gid else None,
                size=attr.st_size if fields.update_size else None,
                mtime_ns=attr.st_mtime_ns if fields.update_mtime else None,
                atime_ns=attr.st_atime_ns if fields.update_atime else None,
                fh=fh,
            )
            return self._attrs(node)
        raise AssertionError("unreachable")

    # -- directories ---------------------------------------------------------------------------

    async def opendir(
        self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.FileHandleT:
        async with _errno("opendir"):
            return pyfuse3.FileHandleT(await self.fs.opendir(inode))
        raise AssertionError("unreachable")

    async def readdir(
        self, fh: pyfuse3.FileHandleT, start_id: int, token: pyfuse3.ReaddirToken
    ) -> None:
        def emit(name: str, node: Node, next_id: int) -> bool:
            return pyfuse3.readdir_reply(token, name.encode("utf-8"), self._attrs(node), next_id)

        async with _errno("readdir"):
            await self.fs.readdir(fh, start_id, emit)

    async def releasedir(self, fh: pyfuse3.FileHandleT) -> None:
        async with _errno("releasedir"):
            await self.fs.releasedir(fh)

    async def fsyncdir(self, fh: pyfuse3.FileHandleT, datasync: bool) -> None:
        return None

    # -- files ---------------------------------------------------------------------------------

    async def open(
        self, inode: pyfuse3.InodeT, flags: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.FileInfo:
        async with _errno("open"):
            handle = await self.fs.open(inode, flags)
            return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(handle.fh), keep_cache=handle.keep_cache)
        raise AssertionError("unreachable")

    async def read(self, fh: pyfuse3.FileHandleT, off: int, size: int) -> bytes:
        async with _errno("read"):
            # pyfuse3 replies with any buffer (it takes the buffer protocol), so a view into
            # a cached block goes to the kernel without a copy; the stub just says bytes.
            return cast(bytes, await self.fs.read(fh, off, size))
        raise AssertionError("unreachable")

    async def write(self, fh: pyfuse3.FileHandleT, off: int, buf: bytes) -> int:
        async with _errno("write"):
            return await self.fs.write(fh, off, buf)
        raise AssertionError("unreachable")

    async def flush(self, fh: pyfuse3.FileHandleT) -> None:
        async with _errno("flush"):
            await self.fs.flush(fh)

    async def fsync(self, fh: pyfuse3.FileHandleT, datasync: bool) -> None:
        async with _errno("fsync"):
            await self.fs.fsync(fh, datasync)

    async def release(self, fh: pyfuse3.FileHandleT) -> None:
        async with _errno("release"):
            await self.fs.release(fh)

    async def create(
        self,
        parent_inode: pyfuse3.InodeT,
        name: bytes,
        mode: int,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        async with _errno("create"):
            handle = await self.fs.create(parent_inode, _name(name), mode & 0o7777, flags)
            self.fs.inodes.ref(handle.node)
            info = pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(handle.fh))
            return info, self._attrs(handle.node)
        raise AssertionError("unreachable")

    # -- namespace changes ---------------------------------------------------------------------

    async def mkdir(
        self, parent_inode: pyfuse3.InodeT, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        async with _errno("mkdir"):
            node = await self.fs.mkdir(parent_inode, _name(name), mode & 0o7777)
            self.fs.inodes.ref(node)
            return self._attrs(node)
        raise AssertionError("unreachable")

    async def mknod(
        self,
        parent_inode: pyfuse3.InodeT,
        name: bytes,
        mode: int,
        rdev: int,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        async with _errno("mknod"):
            if stat.S_ISREG(mode):
                handle = await self.fs.create(parent_inode, _name(name), mode & 0o7777, 0)
                await self.fs.release(handle.fh)
                node = handle.node
            else:
                node = await self.fs.mknod(
                    parent_inode, _name(name), stat.S_IFMT(mode), mode & 0o7777, rdev
                )
            self.fs.inodes.ref(node)
            return self._attrs(node)
        raise AssertionError("unreachable")

    async def unlink(
        self, parent_inode: pyfuse3.InodeT, name: bytes, ctx: pyfuse3.RequestContext
    ) -> None:
        async with _errno("unlink"):
            await self.fs.unlink(parent_inode, _name(name))

    async def rmdir(
        self, parent_inode: pyfuse3.InodeT, name: bytes, ctx: pyfuse3.RequestContext
    ) -> None:
        async with _errno("rmdir"):
            await self.fs.rmdir(parent_inode, _name(name))

    async def rename(
        self,
        parent_inode_old: pyfuse3.InodeT,
        name_old: bytes,
        parent_inode_new: pyfuse3.InodeT,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        async with _errno("rename"):
            await self.fs.rename(
                parent_inode_old, _name(name_old), parent_inode_new, _name(name_new), flags
            )

    async def symlink(
        self,
        parent_inode: pyfuse3.InodeT,
        name: bytes,
        target: bytes,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        async with _errno("symlink"):
            node = await self.fs.symlink(
                parent_inode, _name(name), target.decode("utf-8", "surrogateescape")
            )
            self.fs.inodes.ref(node)
            return self._attrs(node)
        raise AssertionError("unreachable")

    async def readlink(self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext) -> bytes:
        async with _errno("readlink"):
            return await self.fs.readlink(inode)
        raise AssertionError("unreachable")

    async def link(
        self,
        inode: pyfuse3.InodeT,
        new_parent_inode: pyfuse3.InodeT,
        new_name: bytes,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        async with _errno("link"):
            node = await self.fs.link(inode, new_parent_inode, _name(new_name))
            return self._attrs(node)
        raise AssertionError("unreachable")

    # -- extended attributes ------------------------------------------------------------------
    # The kernel asks for security.capability before every write and `ls -l` for POSIX ACLs
    # of every entry: the core answers names it does not keep at once, without a request.
    # XATTR_CREATE and XATTR_REPLACE are pyfuse3's (it asks getxattr first).  With -o noxattr
    # each answers ENOSYS, after which the kernel sends none of them again.

    def _xattrs_off(self) -> None:
        if self.fs.options.no_xattr:
            raise pyfuse3.FUSEError(errno.ENOSYS)

    async def getxattr(
        self, inode: pyfuse3.InodeT, name: pyfuse3.XAttrNameT, ctx: pyfuse3.RequestContext
    ) -> bytes:
        self._xattrs_off()
        # EOPNOTSUPP: the security.capability the kernel asks for before every write.
        async with _errno("getxattr", (*_ROUTINE, errno.EOPNOTSUPP)):
            return await self.fs.getxattr(inode, bytes(name))
        raise AssertionError("unreachable")

    async def listxattr(
        self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext
    ) -> Sequence[pyfuse3.XAttrNameT]:
        self._xattrs_off()
        async with _errno("listxattr"):
            return [pyfuse3.XAttrNameT(name) for name in await self.fs.listxattr(inode)]
        raise AssertionError("unreachable")

    async def setxattr(
        self,
        inode: pyfuse3.InodeT,
        name: pyfuse3.XAttrNameT,
        value: bytes,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        self._xattrs_off()
        async with _errno("setxattr"):
            await self.fs.setxattr(inode, bytes(name), value)

    async def removexattr(
        self, inode: pyfuse3.InodeT, name: pyfuse3.XAttrNameT, ctx: pyfuse3.RequestContext
    ) -> None:
        self._xattrs_off()
        async with _errno("removexattr"):
            await self.fs.removexattr(inode, bytes(name))

    # fallocate: pyfuse3 (3.5) has no handler for it, so the kernel gets ENOSYS and answers
    # every fallocate(2) with EOPNOTSUPP from then on; glibc's posix_fallocate then writes a
    # byte into each 4 KiB block instead (docs/SEMANTICS.md).

    # -- the file system -----------------------------------------------------------------------

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        s = self.fs.statfs()
        out = pyfuse3.StatvfsData()
        out.f_bsize = s.block_size
        out.f_frsize = s.block_size
        out.f_blocks = s.blocks
        out.f_bfree = s.blocks_free
        out.f_bavail = s.blocks_free
        out.f_files = s.files
        out.f_ffree = s.files_free
        out.f_favail = s.files_free
        out.f_namemax = s.name_max
        return out


def kernel_options(fs: Filesystem, source: str) -> set[str]:
    """libfuse mount options for this mount."""
    opts = fs.options
    out = {"default_permissions", f"fsname={opts.fsname or source}", "subtype=blobfs"}
    if opts.read_only:
        out.add("ro")
    if opts.allow_other:
        out.add("allow_other")
    return out


__all__ = ["ERRNO", "Operations", "errno_of", "kernel_options"]
