"""Errors raised by the readers and writers of joint.io."""
from __future__ import annotations

import os
import re
import struct
from contextlib import contextmanager
from pathlib import Path


class EventFileError(ValueError):
    """Bad input file or records. The message always names the file and the field.

    Example message: ``events.root: branch 'km2a_ed_time' has NaN in entry 12``.

    Attributes
    ----------
    path : str — the file (or a description of an in-memory source).
    field : str — the tree, branch or record field at fault.
    problem : str — what is wrong.
    kind : str — "branch", "tree" or "file" (the message then names no field).
    """

    def __init__(self, path, field: str, problem: str, kind: str = "branch"):
        self.path = str(path)
        self.field = str(field)
        self.problem = problem
        self.kind = kind
        if kind == "file":
            super().__init__(f"{self.path}: {problem}")
        else:
            super().__init__(f"{self.path}: {kind} '{self.field}' {problem}")


def _short_reason(err: BaseException) -> str:
    """One line, without exception type names, saying why uproot/zlib could not read a file."""
    msg = " ".join(str(getattr(err, "message", None) or err).split())
    m = re.search(r"expected Chunk of length (\d+), received (\d+) bytes", msg)
    if m:
        return (f"a {m[1]}-byte record runs past the end of the file, {m[2]} bytes of it are "
                "there")
    m = re.search(r"attempting to get bytes (\d+:\d+) outside expected range (\d+:\d+)", msg)
    if m:
        msg = f"bytes {m[1]} lie outside the expected range {m[2]}"
    for cut in (" from FSSpecSource", " for file path ", " in file ", " in object ",
                " for this Chunk"):
        msg = msg.split(cut)[0]
    msg = msg.strip(" .,:;")
    if len(msg) > 160:
        msg = msg[:157] + "..."
    return msg or type(err).__name__


def corrupt_file_error(path, reason) -> EventFileError:
    """The one-line error of a ROOT file that is truncated or damaged (``reason``: a string or
    the exception uproot/zlib raised)."""
    if isinstance(reason, BaseException):
        reason = _short_reason(reason)
    return EventFileError(path, "<file>", "cannot be read: the file is truncated or corrupt "
                          f"({reason})", kind="file")


@contextmanager
def reading(path):
    """Turn any error of uproot, zlib or awkward while reading ``path`` (a truncated or corrupt
    file: short baskets, bad compressed data, broken headers) into the one-line
    :func:`corrupt_file_error`; EventFileError and MemoryError pass through."""
    try:
        yield
    except (EventFileError, MemoryError):
        raise
    except Exception as err:  # noqa: BLE001 - uproot/zlib/awkward raise many types
        raise corrupt_file_error(path, err) from None


def read_arrays(path, tree, names, **kwargs):
    """``tree.arrays(names, library="ak", **kwargs)``; when a truncated or corrupt basket stops
    it, the branches are read one by one to name the first that fails:
    ``cannot be read: the file is truncated or corrupt (branch 'x': <reason>)``."""
    try:
        with reading(path):
            return tree.arrays(names, library="ak", **kwargs)
    except EventFileError as err:
        if err.kind != "file":
            raise
        first = err
    for name in names:
        try:
            tree[name].array(library="ak", **kwargs)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - as in reading()
            raise corrupt_file_error(path, f"branch '{name}': {_short_reason(exc)}") from None
    raise first


def _declared_end(path):
    """(file size, the end of the file its ROOT header declares (``fEND``) or None, magic ok)."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(24)
    if head[:4] != b"root":
        return size, None, False
    if len(head) < 16:
        return size, None, True
    version = struct.unpack(">i", head[4:8])[0]
    if version >= 1000000:
        end = struct.unpack(">q", head[12:20])[0] if len(head) >= 20 else None
    else:
        end = struct.unpack(">i", head[12:16])[0]
    return size, end, True


def open_root(path):
    """``uproot.open(path)``, with one-line EventFileErrors naming the file: it does not exist,
    is not a ROOT file, is shorter than its header declares (truncated: a copy or a write that
    stopped), or its header/directory cannot be read (corrupt)."""
    import uproot

    p = Path(path)
    if not p.exists():
        raise EventFileError(path, "<file>", "file does not exist", kind="file")
    if p.is_dir():
        raise EventFileError(path, "<file>", "is a directory, not a ROOT file", kind="file")
    try:
        size, end, magic = _declared_end(p)
    except OSError as err:
        raise EventFileError(path, "<file>", f"cannot be opened ({err.strerror or err})",
                             kind="file") from None
    if not magic:
        what = "it is empty" if size == 0 else "it does not start with 'root'"
        raise EventFileError(path, "<file>", f"is not a ROOT file ({what})", kind="file")
    if end is None:
        raise corrupt_file_error(path, f"{size} bytes, shorter than a ROOT header")
    if size < end:
        raise corrupt_file_error(path, f"it has {size} of the {end} bytes its header declares")
    with reading(path):
        return uproot.open(p)


def open_tree(path, tree_name: str):
    """Open ``path`` with uproot and return (file, tree); EventFileError naming the file when it
    cannot be opened (:func:`open_root`), the tree is missing or has no entries. The caller closes
    the file."""
    fin = open_root(path)
    try:
        with reading(path):
            if tree_name not in fin:
                keys = list(fin.keys())
                raise EventFileError(path, tree_name, f"is missing (keys: {keys})", kind="tree")
            tree = fin[tree_name]
            n = tree.num_entries
        if n == 0:
            raise EventFileError(path, tree_name, "has 0 entries (empty file)", kind="tree")
    except BaseException:
        fin.close()
        raise
    return fin, tree


class RunError(ValueError):
    """A run that cannot start as asked (bad argument, output path, memory budget), raised
    before any fitting. The message is one line and names the option or path at fault, e.g.
    ``--batch-size must be a positive integer, got -5``. The command line prints it as
    ``lhaaso-joint: error: <message>``."""
