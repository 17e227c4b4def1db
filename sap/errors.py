"""Errors a user can fix, and how the ``sap`` command shows them.

A :class:`UserError` is a problem with the user's files, configuration or arguments (or a run
stopped on purpose): the ``sap`` command prints its message alone — which case or file, what
was expected, what was found, what to do — and exits with its ``exit_status`` (2 unless the
error says otherwise), without a traceback. ``sap --traceback ...`` or ``SAP_TRACEBACK=1``
show the full trace.

Error types of higher layers either inherit :class:`UserError` or are named in
:data:`KNOWN_USER_ERRORS` (by import path, so that this bottom-layer module imports none of
them); :func:`register_user_error` adds more.

>>> is_user_error(ConfigError("lr must be positive"))
True
>>> is_user_error(KeyError("x"))
False
"""

from __future__ import annotations

import os

#: Exit status of a user error (as argparse uses for usage errors).
EXIT_USER_ERROR = 2

#: Error types that are user errors although they do not inherit :class:`UserError`: the
#: typed errors of the data, volume, inference and zoo layers, named by import path.
KNOWN_USER_ERRORS: set[str] = {
    "sap.backbones.registry.UnknownBackboneError",
    "sap.data.problems.CaseValidationError",
    "sap.volume.files.VolumeReadError",
    "sap.inference.inputs.InputError",
    "sap.inference.dicom.DicomSeriesError",
    "sap.inference.memory.InsufficientMemoryError",
    "sap.inference.writer.OutputExistsError",
    "sap.tasks.transfer.TransferError",
    "sap.zoo.catalogue.UnknownModelError",
    "sap.zoo.catalogue.ZooEntryError",
    "sap.zoo.export.ExportError",
    "sap.zoo.hub_errors.HubError",
    "sap.zoo.load.WeightsIntegrityError",
    "sap.zoo.metadata.ModelConfigError",
    "sap.zoo.network.WeightsMismatchError",
    "sap.zoo.reference.ReferenceImportError",
}


class UserError(Exception):
    """A problem the user can fix; its message is all the ``sap`` command prints.

    Args:
        message: which file or option, what was expected, what was found, what to do.
        exit_status: the command's exit status (default :data:`EXIT_USER_ERROR`).
    """

    def __init__(self, message: str, exit_status: int = EXIT_USER_ERROR) -> None:
        super().__init__(message)
        self.exit_status = int(exit_status)


class ConfigError(UserError, ValueError):
    """A configuration value that cannot work: out of range, or disagreeing with another."""


class MissingPathError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class RunInterrupted(UserError):
    """A training run stopped by a signal; the message says where its last checkpoint is.

    The exit status is ``128 + signal number`` (130 for Ctrl+C, 143 for SIGTERM), as a shell
    reports a process ended by that signal.
    """


def register_user_error(error_type: type[BaseException] | str) -> None:
    """Treat ``error_type`` (a class or its ``module.QualifiedName``) as a user error."""
    if not isinstance(error_type, str):
        error_type = f"{error_type.__module__}.{error_type.__qualname__}"
    KNOWN_USER_ERRORS.add(error_type)


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` is a :class:`UserError` or of a type in :data:`KNOWN_USER_ERRORS`."""
    if isinstance(error, UserError):
        return True
    return any(
        f"{cls.__module__}.{cls.__qualname__}" in KNOWN_USER_ERRORS for cls in type(error).__mro__
    )


def find_user_error(error: BaseException) -> BaseException | None:
    """``error`` or the user error it wraps, if any.

    Libraries wrap our errors (jsonargparse re-raises a constructor's error inside its own):
    the chain is followed through ``raise ... from`` causes, and through an implicit context
    only when the outer message repeats the inner one, so that an unrelated error raised
    while handling a user error is never mistaken for it.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if is_user_error(current):
            return current
        seen.add(id(current))
        inner = current.__cause__
        if inner is None and current.__context__ is not None:
            context = current.__context__
            inner = context if str(context) and str(context) in str(current) else None
        current = inner
    return None


def exit_status(error: BaseException) -> int:
    """The exit status the ``sap`` command uses for a user error."""
    return int(getattr(error, "exit_status", EXIT_USER_ERROR))


def traceback_requested() -> bool:
    """Whether ``SAP_TRACEBACK`` asks for full tracebacks (any value but ``""``/``0``)."""
    return os.environ.get("SAP_TRACEBACK", "").strip() not in ("", "0")


__all__ = [
    "EXIT_USER_ERROR",
    "KNOWN_USER_ERRORS",
    "ConfigError",
    "MissingPathError",
    "RunInterrupted",
    "UserError",
    "exit_status",
    "find_user_error",
    "is_user_error",
    "register_user_error",
    "traceback_requested",
]
