"""How store keys become names: which keys are entries of which directory.

The rules (also in ``docs/SEMANTICS.md``, whose examples are tested):

* Keys split at ``/``.  An object ``a/b`` is file ``b`` in directory ``a``; a common prefix
  ``a/`` or a marker object ``a/`` (any size) is directory ``a``.
* A name must be a valid file name: not empty, not ``.`` or ``..``, no NUL, at most
  :data:`NAME_MAX` bytes of UTF-8.  Keys with a component that is not (``a//b``, ``a/./b``,
  ``/lead``, a 300-byte component) are **skipped**: they do not appear in listings and
  cannot be looked up, and listing the rest of the directory is unaffected.
* A file and a directory of the same name (keys ``x`` and ``x/...``): **the directory
  wins**; the object ``x`` is hidden while the directory exists.
* A key is at most :data:`KEY_MAX` bytes (S3's and Azure's limit), the mount's prefix and a
  directory's trailing ``/`` included: a path whose key would be longer cannot be made
  (:func:`check_key`) and cannot exist.

What an object's metadata says about the node is :mod:`blobfs.fs.metadata`'s.
"""

from __future__ import annotations

from blobfs.errors import InvalidName, NameTooLong

NAME_MAX = 255
#: The longest key S3 and Azure store, in bytes of UTF-8.
KEY_MAX = 1024


def valid_name(name: str) -> bool:
    """Whether ``name`` can be a directory entry."""
    if not name or name in (".", "..") or "\0" in name or "/" in name:
        return False
    try:
        return len(name.encode("utf-8")) <= NAME_MAX
    except UnicodeEncodeError:
        return False


def check_name(name: str) -> None:
    """Refuse a name the kernel asks to create: :class:`NameTooLong` over :data:`NAME_MAX`
    bytes, :class:`InvalidName` with a NUL or a slash."""
    if len(name.encode("utf-8", "surrogateescape")) > NAME_MAX:
        raise NameTooLong(name[:40] + "...")
    if "\0" in name or "/" in name:
        raise InvalidName(repr(name))


def key_fits(key: str) -> bool:
    """Whether the store can hold ``key`` (at most :data:`KEY_MAX` bytes)."""
    return len(key.encode("utf-8", "surrogateescape")) <= KEY_MAX


def check_key(key: str) -> None:
    """Refuse to make ``key`` if the store cannot hold it: :class:`NameTooLong`."""
    if not key_fits(key):
        raise NameTooLong(f"{key[:40]}...: the key would be over {KEY_MAX} bytes")


def name_from_kernel(raw: bytes) -> str | None:
    """A kernel name as str, or ``None`` if it is not UTF-8 (no key can have it)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def child_key(parent_key: str, name: str, *, directory: bool) -> str:
    return f"{parent_key}{name}/" if directory else f"{parent_key}{name}"


def root_key(prefix: str) -> str:
    """The key prefix of a mount's root: ``""`` or ``"some/prefix/"``."""
    prefix = prefix.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return prefix
