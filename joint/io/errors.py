"""Errors raised by the readers and writers of joint.io."""
from __future__ import annotations


class EventFileError(ValueError):
    """Bad input file or records. The message always names the file and the field.

    Example message: ``events.root: branch 'km2a_ed_time' has NaN in entry 12``.

    Attributes
    ----------
    path : str — the file (or a description of an in-memory source).
    field : str — the tree, branch or record field at fault.
    problem : str — what is wrong.
    """

    def __init__(self, path, field: str, problem: str, kind: str = "branch"):
        self.path = str(path)
        self.field = str(field)
        self.problem = problem
        if kind == "file":
            super().__init__(f"{self.path}: {problem}")
        else:
            super().__init__(f"{self.path}: {kind} '{self.field}' {problem}")


def open_tree(path, tree_name: str):
    """Open ``path`` with uproot and return (file, tree); EventFileError naming the file when it
    cannot be opened, the tree is missing or has no entries. The caller closes the file."""
    import uproot

    try:
        fin = uproot.open(path)
    except Exception as err:  # noqa: BLE001 - uproot raises many types for unreadable files
        raise EventFileError(path, "<file>", f"cannot be opened as ROOT ({err})", kind="file") \
            from None
    if tree_name not in fin:
        keys = list(fin.keys())
        fin.close()
        raise EventFileError(path, tree_name, f"is missing (keys: {keys})", kind="tree")
    tree = fin[tree_name]
    if tree.num_entries == 0:
        fin.close()
        raise EventFileError(path, tree_name, "has 0 entries (empty file)", kind="tree")
    return fin, tree


class RunError(ValueError):
    """A run that cannot start as asked (bad argument, output path, memory budget), raised
    before any fitting. The message is one line and names the option or path at fault, e.g.
    ``--batch-size must be a positive integer, got -5``. The command line prints it as
    ``lhaaso-joint: error: <message>``."""
