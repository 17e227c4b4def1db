"""Safe writing: nothing a user has is lost, replaced by surprise, or left half-written.

One home for every rule about writing (the README's "Data layout" states them for users):

* **Files** (:func:`atomic_write`): content goes to a temporary file in the destination
  folder, then :func:`os.replace` moves it into place; a crash or a full disk leaves the old
  file or the new one, never a truncated mix. Files and folders get the user's umask.
* **Names** (:func:`check_plain_name`, :func:`path_inside`): an id that becomes a file name
  (a case id) is a plain name, and every output path is proven to lie inside its folder.
* **Output folders** (:class:`OutputFolder`, :func:`replace_folder`): a folder a command
  writes carries :data:`MARKER_FILE` naming the command. A command writes only into a new or
  empty folder or one marked by the same command; ``overwrite`` replaces only such a folder;
  an output folder never lies in (or around) an input folder (:func:`check_outside_inputs`).
  Units (one case's outputs) are written into a hidden folder inside the output folder and
  renamed into place, so they appear whole; a rerun resumes the unfinished ones.
* **Signals** (:func:`cleanup_on_signals`): while output is staged, SIGTERM and SIGHUP raise
  :class:`Terminated` (like Ctrl-C raises ``KeyboardInterrupt``) so temporary files go away.
"""

from __future__ import annotations

from sap.io.files import (
    atomic_write,
    current_umask,
    file_sha256,
    save_nifti_atomic,
    write_bytes_atomic,
    write_text_atomic,
)
from sap.io.folders import (
    MARKER_FILE,
    TEMP_PREFIX,
    OutputFolder,
    check_output_folder,
    read_marker,
    replace_folder,
)
from sap.io.names import (
    OutputFolderError,
    UnsafeNameError,
    check_outside_inputs,
    check_plain_name,
    path_inside,
    plain_name_problem,
)
from sap.io.signals import Terminated, cleanup_on_signals, stop_status

__all__ = [
    "MARKER_FILE",
    "TEMP_PREFIX",
    "OutputFolder",
    "OutputFolderError",
    "Terminated",
    "UnsafeNameError",
    "atomic_write",
    "check_outside_inputs",
    "check_output_folder",
    "check_plain_name",
    "cleanup_on_signals",
    "current_umask",
    "file_sha256",
    "path_inside",
    "plain_name_problem",
    "read_marker",
    "replace_folder",
    "save_nifti_atomic",
    "stop_status",
    "write_bytes_atomic",
    "write_text_atomic",
]
