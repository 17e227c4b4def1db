"""Output folders: marked by their command, replaced only whole, filled unit by unit.

A folder a command writes carries :data:`MARKER_FILE` naming the command. A command writes
only into a new or empty folder or one marked by the same command; ``overwrite`` replaces
only such a folder. :func:`replace_folder` writes a folder whole (staged beside it, renamed
into place); :class:`OutputFolder` fills one unit (a case's outputs) at a time, each staged
inside the folder and renamed into place, and lets a rerun resume the unfinished ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from sap.io.files import current_umask, write_text_atomic
from sap.io.names import (
    OutputFolderError,
    check_outside_inputs,
    path_inside,
    plain_name_problem,
)
from sap.io.signals import cleanup_on_signals, raise_if_stopped

#: Marks a folder as the output of a ``sap`` command (JSON: command, version, settings, units).
MARKER_FILE = ".sap-output.json"
#: Prefix of the hidden folders a command stages output in; removed on failure and rerun.
TEMP_PREFIX = ".sap-tmp-"
_OLD_PREFIX = ".sap-old-"

T = TypeVar("T")


def read_marker(folder: str | Path) -> dict[str, Any] | None:
    """The content of ``folder``'s :data:`MARKER_FILE`, or None when absent or unreadable."""
    try:
        marker = json.loads((Path(folder) / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and isinstance(marker.get("command"), str) else None


def check_output_folder(
    path: str | Path, command: str, *, overwrite: bool, resume: bool = False
) -> dict[str, Any] | None:
    """Check ``path`` may receive the output of ``command``; nothing is written.

    Allowed: a missing or empty folder; a folder marked by ``command`` when ``overwrite``
    (or ``resume``, for commands that continue an earlier run).

    Returns:
        The earlier marker when the folder holds an earlier output of ``command``, else None.

    Raises:
        OutputFolderError: ``path`` is a file, holds something ``command`` did not write, holds
            another command's output, or holds an earlier output and neither flag is set.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputFolderError(f"{path} exists and is not a folder; give a folder for the output.")
    if not path.is_dir() or not any(path.iterdir()):
        return None
    marker = read_marker(path)
    if marker is None:
        raise OutputFolderError(
            f"{path} is not empty and was not written by `{command}` (it has no readable "
            f"{MARKER_FILE}); refusing to write into it. Choose a new or empty folder "
            f"(--overwrite only replaces an earlier output of `{command}`)."
        )
    if marker["command"] != command:
        raise OutputFolderError(
            f"{path} holds the output of `{marker['command']}`, not of `{command}`; refusing "
            "to write into it. Choose another folder."
        )
    if not (overwrite or resume):
        raise OutputFolderError(
            f"{path} already holds an earlier output of `{command}`. Pass --overwrite "
            "(Python: overwrite=True) to replace it, or choose another folder."
        )
    return marker


def _make_folder(path: Path) -> Path:
    """``mkdtemp`` with the umask's permissions instead of 0700."""
    os.chmod(path, 0o777 & ~current_umask())
    return path


def _apply_umask(folder: Path) -> None:
    """Give everything in ``folder`` the permissions a plain ``open``/``mkdir`` would.

    Some writers create private files (safetensors: 0600); a shared lab folder must be able to
    read what ``sap`` wrote, like what any other tool writes.
    """
    mask = current_umask()
    for root, folders, files in os.walk(folder):
        for name in folders:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o666 & ~mask)


def _stage(parent: Path, name: str) -> Path:
    return _make_folder(Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{name}-", dir=parent)))


def _swap_in(staged: Path, final: Path) -> None:
    """Rename ``staged`` to ``final``; an existing ``final`` is moved aside, then deleted."""
    if not final.exists() or (final.is_dir() and not any(final.iterdir())):
        os.replace(staged, final)  # an empty folder is replaced by the rename
        return
    aside = Path(tempfile.mkdtemp(prefix=_OLD_PREFIX, dir=final.parent))
    os.replace(final, aside / "previous")
    try:
        os.replace(staged, final)
    except BaseException:
        os.replace(aside / "previous", final)  # put the earlier output back
        raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def _marker_text(command: str, **fields: Any) -> str:
    from sap._version import __version__

    return json.dumps({"command": command, "sap_version": __version__, **fields}, indent=2) + "\n"


def replace_folder(
    path: str | Path,
    command: str,
    writer: Callable[[Path], T],
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
    settings: Mapping[str, Any] | None = None,
) -> T:
    """Create folder ``path`` whole: ``writer`` fills a hidden sibling, which is renamed into place.

    The marker is written into the staged folder last, listing its entries. An earlier output
    of ``command`` is replaced only with ``overwrite``, only if it holds nothing but what that
    output listed, and only once the new one is complete; on any error or signal the staged
    folder is removed and ``path`` is left as it was.

    Returns:
        What ``writer`` returned.

    Raises:
        OutputFolderError: see :func:`check_output_folder` and :func:`check_outside_inputs`;
            also when an earlier output holds files the user added.
    """
    path = Path(path)
    check_outside_inputs(path, inputs)
    marker = check_output_folder(path, command, overwrite=overwrite)
    if marker is not None:
        listed = set(marker.get("files", [])) | {MARKER_FILE}
        foreign = sorted(p.name for p in path.iterdir() if p.name not in listed)
        if foreign:
            raise OutputFolderError(
                f"{path} holds an earlier output of `{command}` and also {foreign}, which "
                f"`{command}` did not write; refusing to replace them. Move them out first."
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    with cleanup_on_signals():
        staged = _stage(path.parent, path.name)
        try:
            result = writer(staged)
            files = sorted(p.name for p in staged.iterdir())
            text = _marker_text(command, complete=True, settings=dict(settings or {}), files=files)
            write_text_atomic(staged / MARKER_FILE, text)
            _apply_umask(staged)
            raise_if_stopped()
            _swap_in(staged, path)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
    return result


class OutputFolder:
    """A folder a command fills unit by unit (one case folder each); reruns resume.

    :meth:`open` claims the folder (see :func:`check_output_folder`) and writes the marker
    with ``complete: false``; :meth:`write_unit` stages one unit inside the folder and renames
    it into place, then records it as finished; :meth:`finish` marks the output complete and,
    after ``overwrite``, removes units of the earlier run that this run did not rewrite.

    Use it as a context manager: SIGTERM/SIGHUP are turned into :class:`Terminated` and staged
    units are removed on the way out, whatever happens.

    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "out"
    >>> with OutputFolder.open(out, "sap example", overwrite=False) as folder:
    ...     _ = folder.write_unit("case_a", lambda tmp: (tmp / "a.txt").write_text("a"))
    ...     folder.finish()
    >>> sorted(p.name for p in out.iterdir()), read_marker(out)["units"]
    (['.sap-output.json', 'case_a'], ['case_a'])
    >>> OutputFolder.open(out, "sap example", overwrite=False).finished
    {'case_a'}
    >>> import shutil; shutil.rmtree(out.parent)
    """

    def __init__(
        self, path: Path, command: str, settings: dict[str, Any], done: set[str], stale: set[str]
    ) -> None:
        self.path = path
        self.command = command
        self.settings = settings
        self._done = done
        self._stale = stale
        self._files: set[str] = set()
        self._signals: contextlib.ExitStack | None = None

    @classmethod
    def open(
        cls,
        path: str | Path,
        command: str,
        *,
        overwrite: bool,
        settings: Mapping[str, Any] | None = None,
        resume: bool = True,
        inputs: Iterable[str | Path] = (),
    ) -> OutputFolder:
        """Claim ``path`` for ``command``.

        Args:
            path: the output folder (created if missing).
            command: the command, as the marker names it (``"sap predict"``).
            overwrite: replace an earlier output of ``command``: its units count as stale
                and are rewritten or removed by :meth:`finish`.
            settings: what the output depends on (models, thresholds); an earlier output
                made with other settings is resumed only with ``overwrite``.
            resume: continue an earlier output of ``command`` without ``overwrite``; its
                finished units are kept (:attr:`finished`).
            inputs: input folders the output must stay out of (:func:`check_outside_inputs`).

        Raises:
            OutputFolderError: the folder cannot be used; the message says why.
        """
        path = Path(path)
        settings = json.loads(json.dumps(dict(settings or {}), default=str))
        check_outside_inputs(path, inputs)
        marker = check_output_folder(path, command, overwrite=overwrite, resume=resume)
        done: set[str] = set()
        stale: set[str] = set()
        files: set[str] = set()
        if marker is not None:
            units, earlier_stale, earlier_files = (
                {str(n) for n in marker.get(key, []) if plain_name_problem(str(n)) is None}
                for key in ("units", "stale", "files")
            )
            if overwrite:
                stale = units | earlier_stale
                for name in earlier_files:  # a summary of the earlier run would mislead
                    if (path / name).is_file():
                        (path / name).unlink()
            else:
                _check_same_settings(path, command, marker.get("settings", {}), settings)
                done = {name for name in units if (path / name).is_dir()}
                stale, files = earlier_stale - done, earlier_files
        path.mkdir(parents=True, exist_ok=True)
        for leftover in path.glob(".sap-*-*"):
            if leftover.name.startswith((TEMP_PREFIX, _OLD_PREFIX)) and leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)  # from a run that was killed
        folder = cls(path, command, settings, done, stale)
        folder._files = files
        folder._save(complete=False)
        return folder

    @property
    def finished(self) -> set[str]:
        """Units finished by this run or by the earlier run it resumes."""
        return set(self._done)

    def __enter__(self) -> OutputFolder:
        self._signals = contextlib.ExitStack()
        self._signals.enter_context(cleanup_on_signals())
        return self

    def __exit__(self, *exc_info: object) -> None:
        for leftover in self.path.glob(f"{TEMP_PREFIX}*"):
            shutil.rmtree(leftover, ignore_errors=True)
        if self._signals is not None:
            self._signals.close()

    def write_unit(self, name: str, writer: Callable[[Path], T]) -> T:
        """Write unit ``name`` (a folder) whole: ``writer(tmp)`` fills a hidden folder inside
        the output folder, which then replaces ``path/name`` in one rename.

        Raises:
            UnsafeNameError: ``name`` is not a plain name or resolves outside the folder.
            OutputFolderError: ``path/name`` exists and was not written by this command.
        """
        final = path_inside(self.path, name)
        if final.exists() and name not in self._done | self._stale:
            raise OutputFolderError(
                f"{final} exists but was not written by `{self.command}`; move it away, then "
                "run again."
            )
        staged = _stage(self.path, name)
        try:
            result = writer(staged)
            _apply_umask(staged)
            raise_if_stopped()
            _swap_in(staged, final)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        self._done.add(name)
        self._stale.discard(name)
        self._save(complete=False)
        return result

    def write_text(self, name: str, text: str) -> Path:
        """Write the file ``path/name`` atomically (a summary, say) and list it in the marker."""
        written = write_text_atomic(path_inside(self.path, name), text)
        self._files.add(name)
        self._save(complete=False)
        return written

    def finish(self) -> None:
        """Mark the output complete; remove stale units of an earlier run not rewritten."""
        raise_if_stopped()
        for name in sorted(self._stale):
            unit = self.path / name
            if unit.is_dir() and not unit.is_symlink():
                shutil.rmtree(unit)
        self._stale.clear()
        self._save(complete=True)

    def _save(self, complete: bool) -> None:
        text = _marker_text(
            self.command,
            complete=complete,
            settings=self.settings,
            units=sorted(self._done),
            stale=sorted(self._stale),
            files=sorted(self._files),
        )
        write_text_atomic(self.path / MARKER_FILE, text)


def _check_same_settings(
    path: Path, command: str, earlier: Mapping[str, Any], now: Mapping[str, Any]
) -> None:
    """Refuse to continue an earlier output made with other settings."""
    changed = sorted(k for k in set(earlier) | set(now) if earlier.get(k) != now.get(k))
    if changed:
        shown = "; ".join(f"{k}: {earlier.get(k)!r} -> {now.get(k)!r}" for k in changed[:5])
        raise OutputFolderError(
            f"{path} holds an earlier output of `{command}` made with other settings ({shown}). "
            "Pass --overwrite to replace it, or choose another folder."
        )


__all__ = [
    "MARKER_FILE",
    "TEMP_PREFIX",
    "OutputFolder",
    "check_output_folder",
    "read_marker",
    "replace_folder",
]
