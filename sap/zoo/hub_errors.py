"""The errors of Hub operations, and the translation of ``huggingface_hub``'s into them.

Each error says what failed and what to do; :func:`hub_errors` turns the client's typed
exceptions and raw transport errors (httpx or requests) into them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_GO_OFFLINE = (
    "To work without the network, set HF_HUB_OFFLINE=1 (or pass local_files_only=True) and use a "
    "model that is already in the cache or a local export folder."
)


class HubError(RuntimeError):
    """A Hub operation failed; the message says why and what to do."""


class HubUnreachableError(HubError):
    """The Hub could not be contacted (no network, wrong ``HF_ENDPOINT``, firewall)."""


class HubRepoNotFoundError(HubError):
    """The repository does not exist, or is private and no valid token was given."""


class HubRevisionNotFoundError(HubError):
    """The repository exists but the requested revision (branch, tag or commit) does not."""


class NotInCacheError(HubError):
    """Offline mode is on and the requested revision is not in the local cache."""


class CacheIntegrityError(HubError):
    """A cached file no longer matches the hash it was downloaded under (modified or corrupt)."""


_CONNECT_ERRORS = {
    "ConnectError",  # httpx: refused, DNS failure
    "ConnectTimeout",
    "TimeoutException",  # httpx: no answer in time
    "Timeout",  # requests
    "TimeoutError",
    "ConnectionError",  # requests, and the built-in behind "connection refused"
    "OfflineModeIsEnabled",
}
_TRANSFER_ERRORS = {"TransportError", "RemoteProtocolError", "ReadError", "ChunkedEncodingError"}


def _transport_error_kind(error: BaseException) -> str | None:
    """``"connect"`` (the Hub did not answer), ``"transfer"`` (a download broke off), or ``None``.

    Decided on class names so both the httpx-based and the older requests-based
    huggingface_hub are understood without importing either HTTP library.
    """
    names = {cls.__name__ for cls in type(error).__mro__}
    if names & _CONNECT_ERRORS:
        return "connect"
    if names & _TRANSFER_ERRORS or isinstance(error, OSError):
        return "transfer"
    return None


@contextmanager
def hub_errors(where: str, repo_id: str, revision: str | None, endpoint: str) -> Iterator[None]:
    """Translate huggingface_hub / transport exceptions into :class:`HubError` subclasses.

    Args:
        where: the model as users name it (``hf://owner/repo@revision``), for messages.
        repo_id, revision, endpoint: what was asked of which Hub.
    """
    try:
        yield
    except HubError:
        raise
    except Exception as error:
        from huggingface_hub.utils import (
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        if isinstance(error, RevisionNotFoundError):
            raise HubRevisionNotFoundError(
                f"Revision {revision!r} does not exist in {repo_id} on {endpoint}. Give an existing "
                "branch, tag or commit (`sap zoo pull REPO --list-revisions` lists commits)."
            ) from error
        if isinstance(error, RepositoryNotFoundError):
            raise HubRepoNotFoundError(
                f"Repository {repo_id} was not found on {endpoint}. Check the name; for a private "
                "repository log in (`hf auth login`) or pass a token."
            ) from error
        if isinstance(error, HfHubHTTPError):
            status = getattr(getattr(error, "response", None), "status_code", "?")
            raise HubError(
                f"The Hub at {endpoint} refused the request for {where} (HTTP {status}): {error}"
            ) from error
        if isinstance(error, LocalEntryNotFoundError):
            kind = "connect"  # snapshot_download's answer when the Hub did not respond
        else:
            kind = _transport_error_kind(error)
        summary = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        if kind == "connect":
            raise HubUnreachableError(
                f"Cannot reach the Hugging Face Hub at {endpoint} for {where} ({summary}). "
                f"Check the network, a proxy, or HF_ENDPOINT. {_GO_OFFLINE}"
            ) from error
        if kind == "transfer":
            raise HubError(
                f"The transfer of {where} from {endpoint} broke off ({summary}). No partial file "
                "was kept in the cache; run the same command again."
            ) from error
        raise


__all__ = [
    "CacheIntegrityError",
    "HubError",
    "HubRepoNotFoundError",
    "HubRevisionNotFoundError",
    "HubUnreachableError",
    "NotInCacheError",
    "hub_errors",
]
