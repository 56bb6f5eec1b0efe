"""Part of a mount named by paths, as ``blobfs flush`` and ``blobfs invalidate`` give them.

A path is relative to the mount's root (``""`` is the whole mount) and names a file, a
directory, or both: ``a/b`` covers the file key ``a/b`` and every key under ``a/b/``.
Paths are checked here, because they come from outside the kernel: a component that could
never be a name (``..``, ``.``, empty, NUL, over 255 bytes) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from blobfs.errors import InvalidName
from blobfs.fs.names import valid_name


@dataclass(frozen=True)
class Scope:
    """The keys under some paths of a mount whose root is ``root`` (a key prefix)."""

    root: str
    #: Relative paths without leading or trailing slashes; empty: the whole mount.
    paths: tuple[str, ...] = ()

    @classmethod
    def of(cls, root: str, paths: list[str] | tuple[str, ...] = ()) -> Scope:
        """The scope of ``paths`` (``InvalidName`` for a path that can name nothing).  No
        path, or ``""`` among them, is the whole mount."""
        clean: list[str] = []
        for path in paths:
            parts = [p for p in path.strip("/").split("/") if p != ""] if path else []
            for part in parts:
                if not valid_name(part):
                    raise InvalidName(f"not a path on the mount: {path!r}")
            if not parts:
                return cls(root)
            clean.append("/".join(parts))
        return cls(root, tuple(dict.fromkeys(clean)))

    @property
    def everything(self) -> bool:
        return not self.paths

    def holds(self, key: str) -> bool:
        """Whether ``key`` (a file key, or a directory's with its slash) is in the scope."""
        if not key.startswith(self.root):
            return False
        if not self.paths:
            return True
        rest = key[len(self.root) :]
        return any(rest == p or rest.startswith(p + "/") for p in self.paths)

    def parent_keys(self) -> list[str]:
        """The keys of the directories that hold the scope's paths (their listings name
        them); the root's parent is none."""
        out = []
        for path in self.paths:
            head, _, _ = path.rpartition("/")
            out.append(self.root + (head + "/" if head else ""))
        return out

    def path_of(self, key: str) -> str:
        """The path on the mount of ``key`` (relative to its root)."""
        return key[len(self.root) :] if key.startswith(self.root) else key


__all__ = ["Scope"]
