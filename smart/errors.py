"""Errors that name the file and field at fault.

Every user-facing failure caused by bad input raises :class:`InputError` (or a subclass) with the
offending path and, where there is one, the field or key, so that a user can fix the file without
reading a traceback. The CLI prints such errors as one line and exits with status 2.
"""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input: a missing or malformed file, field or parameter.

    Args:
        message: what is wrong.
        path: the file or directory at fault, if any.
        field: the key, field or record inside that file, if any.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, field: str | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.field = field
        parts = []
        if self.path is not None:
            parts.append(self.path)
        if field is not None:
            parts.append(f"[{field}]")
        where = " ".join(parts)
        super().__init__(f"{where}: {message}" if where else message)


class DatasetError(InputError):
    """A dataset on disk is missing, incomplete or inconsistent."""


class ConfigError(InputError):
    """An invalid parameter in params.yaml or a resolved config."""
