"""One Hub look-alike for the whole session; each test gets its own repository name and cache."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.helpers.hub_server import HubServer


@pytest.fixture(scope="session")
def hub_server() -> Iterator[HubServer]:
    with HubServer() as server:
        yield server


@pytest.fixture
def hub(hub_server: HubServer, tmp_path, monkeypatch) -> Iterator[HubServer]:
    """The session's Hub with a clean slate of requests, and this test's own cache.

    Two import-time settings of huggingface_hub are pinned: its offline flag (a developer's
    ``HF_HUB_OFFLINE=1`` would otherwise block every request to the local server) and the
    token (``HF_TOKEN``; no real login is read).
    """
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_TOKEN", "hf_sap_tests_dummy_token")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
    hub_server.requests.clear()
    hub_server.truncate_downloads.clear()
    yield hub_server
    hub_server.truncate_downloads.clear()


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    """A repository id no other test uses: ``sap-tests/<test name>``."""
    name = re.sub(r"[^\w.\-]+", "-", request.node.name).strip("-.")[:80]
    return f"sap-tests/{name}"
