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
