"""Push export folders to the Hugging Face Hub and pull them back, pinned and verified.

Everything goes through ``huggingface_hub`` (never raw HTTP), so the same code talks to
huggingface.co, to a private Hub mirror (``HF_ENDPOINT``), or to the small Hub look-alike the
test suite runs on 127.0.0.1. Pulled files land in the standard Hugging Face cache.

Read at *call* time, not at import time, so a notebook can change them between calls:

- ``HF_HUB_OFFLINE`` (or ``local_files_only=True``): never touch the network; use the cache.
  (``huggingface_hub`` itself reads ``HF_HUB_OFFLINE`` once at import: if it was set then, it
  stays offline for the whole process.)
- ``HF_ENDPOINT``: which Hub to talk to.
- ``HF_HUB_CACHE`` / ``HF_HOME``: where the cache is.

Safety: only the three export files are downloaded (``model.safetensors``, ``config.json``,
``README.md``); no code from a repository is ever run and nothing is unpickled. After a pull,
every cached file is checked against the content hash it is stored under (the cache names
each blob by its git or sha256 hash), so a cached file modified after download is refused;
:func:`sap.zoo.load.load_export` then also checks the weights against the sha256 in
``config.json`` and in the zoo catalogue entry.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sap.zoo.hub_errors import (
    CacheIntegrityError,
    HubError,
    NotInCacheError,
    hub_errors,
)
from sap.zoo.metadata import CARD_FILE, CONFIG_FILE, EXPORT_FILES, WEIGHTS_FILE, read_config

HF_URI_PREFIX = "hf://"
DEFAULT_TIMEOUT_S = 10.0
_COMMIT_HASH = re.compile(r"^[0-9a-f]{40}$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_TRUE = {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class HubLocation:
    """A model on the Hub: ``repo_id`` and an optional revision (branch, tag or commit)."""

    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return f"{HF_URI_PREFIX}{self.repo_id}" + (f"@{self.revision}" if self.revision else "")


@dataclass(frozen=True)
class PushResult:
    """What :func:`push_to_hub` created: pin ``commit`` to load exactly these weights later."""

    repo_id: str
    commit: str
    commit_url: str
    branch: str

    @property
    def uri(self) -> str:
        """``hf://owner/repo@<commit>``, ready for :func:`sap.load_pretrained`."""
        return str(HubLocation(self.repo_id, self.commit))


@dataclass(frozen=True)
class HubRevision:
    """One commit of a Hub repository."""

    commit: str
    title: str
    date: datetime


def parse_hf_uri(uri: str) -> HubLocation:
    """Split ``"hf://owner/repo@revision"`` (revision optional).

    >>> parse_hf_uri("hf://sap-org/sap-skeleton@v1")
    HubLocation(repo_id='sap-org/sap-skeleton', revision='v1')
    """
    if not uri.startswith(HF_URI_PREFIX):
        raise ValueError(
            f"{uri!r} is not a Hub URI; expected 'hf://owner/repo' or 'hf://owner/repo@revision'."
        )
    body = uri[len(HF_URI_PREFIX) :]
    repo_id, _, revision = body.partition("@")
    repo_id = repo_id.strip("/")
    if not _REPO_ID.match(repo_id):
        raise ValueError(f"{uri!r}: {repo_id!r} is not a repository id; expected 'owner/name'.")
    if "@" in body and not revision:
        raise ValueError(
            f"{uri!r}: empty revision after '@'; give a branch, tag or commit, or drop the '@'."
        )
    return HubLocation(repo_id, revision or None)


def resolve_location(repo_or_uri: str, revision: str | None = None) -> HubLocation:
    """``"owner/name"`` or ``"hf://owner/name@revision"`` as a location; ``revision`` wins if given.

    >>> resolve_location("hf://sap-org/sap-skeleton@v1", None)
    HubLocation(repo_id='sap-org/sap-skeleton', revision='v1')
    >>> resolve_location("sap-org/sap-skeleton", "main")
    HubLocation(repo_id='sap-org/sap-skeleton', revision='main')
    """
    if repo_or_uri.startswith(HF_URI_PREFIX):
        location = parse_hf_uri(repo_or_uri)
        return HubLocation(location.repo_id, revision or location.revision)
    return HubLocation(repo_or_uri, revision)


def offline_mode(local_files_only: bool | None = None) -> bool:
    """Whether Hub calls must stay off the network, decided now.

    True when ``local_files_only`` is set, when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``)
    is truthy in the environment now, or when ``huggingface_hub`` was imported in offline mode.
    """
    if local_files_only:
        return True
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(variable, "").strip().upper() in _TRUE:
            return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_endpoint(endpoint: str | None = None) -> str:
    """The Hub URL to talk to: ``endpoint``, else ``HF_ENDPOINT`` now, else huggingface_hub's default."""
    if endpoint:
        return endpoint.rstrip("/")
    if os.environ.get("HF_ENDPOINT"):
        return os.environ["HF_ENDPOINT"].rstrip("/")
    from huggingface_hub import constants

    return constants.ENDPOINT


def hub_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The Hugging Face cache folder: ``cache_dir``, else ``HF_HUB_CACHE`` / ``HF_HOME``/hub now."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def push_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    revision: str | None = None,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> PushResult:
    """Upload an export folder to a Hub model repository (created if needed).

    The weights are checked against the sha256 in ``config.json`` before anything is sent, so a
    damaged folder is never published. The model card is regenerated with this repository in its
    "How to load" example.

    Args:
        folder: an export folder (:func:`sap.zoo.save_pretrained`, ``sap zoo export``).
        repo_id: ``"owner/name"``.
        revision: branch to commit to (created from ``main`` if missing); default ``main``.
        commit_message: defaults to "Upload <model name> with sap <version>".
        private: visibility when the repository is created; ignored if it exists.
        token: Hub token with write access; default: huggingface_hub's (``HF_TOKEN``, login).
        endpoint: Hub URL; default ``HF_ENDPOINT`` or huggingface.co.

    Returns:
        The new commit; ``result.uri`` (``hf://owner/repo@<commit>``) loads exactly this upload.
    """
    from sap.io import file_sha256
    from sap.zoo.model_card import render_model_card

    folder = Path(folder)
    if not _REPO_ID.match(repo_id):
        raise ValueError(f"{repo_id!r} is not a repository id; expected 'owner/name'.")
    if offline_mode():
        raise HubError(
            f"Cannot push {folder} to {repo_id}: offline mode is on (HF_HUB_OFFLINE). Unset it to upload."
        )
    config = read_config(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing; {folder} is not a complete export folder.")
    if config.weights is None or file_sha256(weights) != config.weights.sha256:
        raise HubError(
            f"Refusing to push {folder}: {WEIGHTS_FILE} does not match the sha256 recorded in {CONFIG_FILE}. "
            "Export the model again."
        )
    branch = revision or "main"
    load_id = str(HubLocation(repo_id, None if branch == "main" else branch))
    message = commit_message or f"Upload {config.name or 'model'} with sap {config.sap_version}"

    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_endpoint(endpoint), token=token)
    with tempfile.TemporaryDirectory(prefix="sap-push-") as staging_name:
        staging = Path(staging_name)
        for name in (WEIGHTS_FILE, CONFIG_FILE):
            _link_or_copy(folder / name, staging / name)
        (staging / CARD_FILE).write_text(
            render_model_card(config, load_id=load_id), encoding="utf-8"
        )
        with hub_errors(str(HubLocation(repo_id, branch)), repo_id, branch, api.endpoint):
            create_kwargs: dict[str, Any] = {"exist_ok": True}
            if private is not None:
                create_kwargs["private"] = private
            api.create_repo(repo_id, **create_kwargs)
            if branch != "main":
                api.create_branch(repo_id, branch=branch, exist_ok=True)
            info = api.upload_folder(
                folder_path=staging,
                repo_id=repo_id,
                revision=branch,
                commit_message=message,
                allow_patterns=list(EXPORT_FILES),
            )
    return PushResult(
        repo_id=repo_id, commit=info.oid, commit_url=str(info.commit_url), branch=branch
    )


def pull_from_hub(
    repo_id: str,
    revision: str | None = None,
    *,
    local_files_only: bool | None = None,
    force_download: bool = False,
    cache_dir: str | Path | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Path:
    """Download (or find in the cache) an export folder and return its local path.

    Args:
        repo_id: ``"owner/name"``.
        revision: branch, tag or 40-hex commit; default ``main``. Pin a commit for
            reproducibility: a cached commit is used without any network request.
        local_files_only: only use the cache (also implied by ``HF_HUB_OFFLINE=1``).
        force_download: download again even if cached (repairs a damaged cache).
        cache_dir: Hugging Face cache folder; default ``HF_HUB_CACHE`` / ``HF_HOME``.
        token: Hub token for private repositories.
        endpoint: Hub URL; default ``HF_ENDPOINT`` or huggingface.co.
        timeout_s: how long to wait for the Hub to answer before giving up.

    Returns:
        The snapshot folder in the cache, holding ``model.safetensors``, ``config.json`` and
        (when present in the repository) ``README.md``.

    Raises:
        HubUnreachableError: not offline, and the Hub does not answer.
        HubRepoNotFoundError, HubRevisionNotFoundError: no such repository / revision.
        NotInCacheError: offline, and this revision has not been pulled before.
        CacheIntegrityError: a cached file was modified after download.
        HubError: the revision is not a ``sap`` export (no ``config.json`` / weights).
    """
    if not _REPO_ID.match(repo_id):
        raise ValueError(f"{repo_id!r} is not a repository id; expected 'owner/name'.")
    shown = str(HubLocation(repo_id, revision))
    endpoint = hub_endpoint(endpoint)
    cache = hub_cache_dir(cache_dir)
    common: dict[str, Any] = {
        "repo_id": repo_id,
        "revision": revision,
        "cache_dir": str(cache),
        "endpoint": endpoint,
        "token": token,
        "allow_patterns": list(EXPORT_FILES),
    }
    if offline_mode(local_files_only):
        path = _cached_snapshot(common, shown, cache)
    else:
        path = _download_snapshot(common, shown, force_download, token, timeout_s)
    folder = Path(path)
    if not _has_export_files(folder):
        present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        raise HubError(
            f"{shown} is not a sap model export: expected {WEIGHTS_FILE} and {CONFIG_FILE}, found {present}. "
            "Upload export folders with `sap zoo push`."
        )
    verify_cached_snapshot(folder)
    return folder


def _cached_snapshot(common: dict[str, Any], shown: str, cache: Path) -> str:
    """The snapshot folder from the cache alone; :class:`NotInCacheError` if it is not there."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import LocalEntryNotFoundError

    try:
        return snapshot_download(local_files_only=True, **common)
    except LocalEntryNotFoundError as error:
        revision = common["revision"]
        raise NotInCacheError(
            f"{shown} is not in the Hugging Face cache ({cache}) and offline mode is on "
            "(HF_HUB_OFFLINE=1 or local_files_only=True). Pull it once with network access "
            f"(`sap zoo pull {common['repo_id']}"
            + (f" --revision {revision}" if revision else "")
            + "`), or point HF_HUB_CACHE at a cache that holds it."
        ) from error


def _download_snapshot(
    common: dict[str, Any], shown: str, force_download: bool, token: str | None, timeout_s: float
) -> str:
    """The snapshot folder, downloaded unless a pinned commit is complete in the cache."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.utils import LocalEntryNotFoundError

    repo_id, revision, endpoint = common["repo_id"], common["revision"], common["endpoint"]
    if revision and _COMMIT_HASH.match(revision) and not force_download:
        # A commit never changes: a complete cached snapshot is the answer, no request needed.
        try:
            path = snapshot_download(local_files_only=True, **common)
        except LocalEntryNotFoundError:
            path = None
        if path is not None and _has_export_files(Path(path)):
            return path
    api = HfApi(endpoint=endpoint, token=token)
    with hub_errors(shown, repo_id, revision, endpoint):
        _probe(api, repo_id, revision, timeout_s)
        return snapshot_download(force_download=force_download, etag_timeout=timeout_s, **common)


def list_revisions(
    repo_id: str,
    branch: str | None = None,
    *,
    token: str | None = None,
    endpoint: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[HubRevision]:
    """Commits of ``branch`` (default ``main``), newest first, so users can pick one to pin.

    ``repo_id`` may also be ``"hf://owner/name@branch"``.
    """
    from huggingface_hub import HfApi

    location = resolve_location(repo_id, branch)
    repo_id, branch = location.repo_id, location.revision or "main"
    if offline_mode():
        raise HubError(f"Cannot list revisions of {repo_id}: offline mode is on (HF_HUB_OFFLINE).")
    api = HfApi(endpoint=hub_endpoint(endpoint), token=token)
    with hub_errors(str(HubLocation(repo_id, branch)), repo_id, branch, api.endpoint):
        _probe(api, repo_id, branch, timeout_s)
        commits = api.list_repo_commits(repo_id, revision=branch)
    return [HubRevision(commit=c.commit_id, title=c.title, date=c.created_at) for c in commits]


def _probe(api: Any, repo_id: str, revision: str | None, timeout_s: float) -> None:
    """One cheap request with a short timeout before the real work.

    huggingface_hub retries network errors with back-off (about 20 s in all) in its download
    and listing calls; asking for the repository info first reports an unreachable Hub, a
    missing repository or a missing revision at once.
    """
    api.model_info(repo_id, revision=revision, timeout=timeout_s)


def verify_cached_snapshot(folder: str | Path) -> None:
    """Check every file of a cache snapshot against the hash its blob is named by.

    The Hugging Face cache stores each file once under ``blobs/<etag>`` and links it from
    ``snapshots/<commit>/``; the etag is the git blob sha1 (40 hex) of a regular file or the
    sha256 (64 hex) of a large (LFS/Xet) file. A file whose content no longer gives its own name
    was changed after download. Files that are not such links (copies on systems without
    symlinks, local folders) are skipped here; the weights are still checked by the loader.

    Raises:
        CacheIntegrityError: naming the file and how to repair the cache.
    """
    for path in sorted(Path(folder).iterdir()):
        if not path.is_symlink():
            continue
        blob = path.resolve()
        expected = blob.name
        if re.fullmatch(r"[0-9a-f]{64}", expected):
            found = _hash_file(blob, "sha256")
        elif re.fullmatch(r"[0-9a-f]{40}", expected):
            found = _hash_file(blob, "git-sha1")
        else:
            continue
        if found != expected:
            raise CacheIntegrityError(
                f"Cached file {path} (blob {blob}) does not match the hash it was downloaded under "
                f"(expected {expected}, found {found}): it was modified or corrupted after download. "
                f"Delete {blob} or pull again with force_download=True (`sap zoo pull ... --force-download`)."
            )


def _hash_file(path: Path, kind: str) -> str:
    digest = hashlib.sha256() if kind == "sha256" else hashlib.sha1()
    if kind == "git-sha1":
        digest.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _has_export_files(folder: Path) -> bool:
    return (folder / WEIGHTS_FILE).is_file() and (folder / CONFIG_FILE).is_file()


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


__all__ = [
    "HubLocation",
    "HubRevision",
    "PushResult",
    "hub_cache_dir",
    "hub_endpoint",
    "list_revisions",
    "offline_mode",
    "parse_hf_uri",
    "pull_from_hub",
    "push_to_hub",
    "resolve_location",
    "verify_cached_snapshot",
]
