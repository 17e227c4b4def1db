"""Hub round trips through the real ``huggingface_hub`` client, against ``tests/helpers/hub_server.py``.

How the environment is set up: ``sap.zoo.hub`` reads ``HF_ENDPOINT``, ``HF_HUB_CACHE`` and
``HF_HUB_OFFLINE`` at call time and passes endpoint and cache folder to huggingface_hub
explicitly, so the ``hub`` fixture (``tests/zoo/conftest.py``) points them at one local server
for the session and a temporary cache per test with ``monkeypatch.setenv``, whatever was
imported before; each test pushes to its own repository (the ``repo`` fixture).
``test_env_set_before_import_works_in_a_fresh_process`` checks the other way round: the
variables set before huggingface_hub is imported, in a fresh interpreter.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sap.zoo import (
    CacheIntegrityError,
    HubError,
    HubRepoNotFoundError,
    HubRevisionNotFoundError,
    HubUnreachableError,
    NotInCacheError,
    WeightsIntegrityError,
    list_revisions,
    load_pretrained,
    pull_from_hub,
    push_to_hub,
)
from sap.zoo.export import file_sha256
from tests.helpers.zoo import catalogue_entry, same_output, tiny_export, write_catalogue_entry


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_push_pull_by_revision_round_trip(hub, repo, tmp_path):
    first, folder1 = tiny_export(tmp_path / "v1", seed=0)
    push1 = push_to_hub(folder1, repo)
    assert len(push1.commit) == 40 and push1.uri == f"hf://{repo}@{push1.commit}"

    second, folder2 = tiny_export(tmp_path / "v2", seed=1)
    push2 = push_to_hub(folder2, repo, commit_message="second weights")
    assert push2.commit != push1.commit

    latest = load_pretrained(f"hf://{repo}")
    assert same_output(latest, second)
    pinned = load_pretrained(push1.uri)  # the first revision again, after the second push
    assert same_output(pinned, first) and not same_output(pinned, second)

    snapshot = pull_from_hub(repo, push1.commit)
    assert snapshot.name == push1.commit
    assert sorted(p.name for p in snapshot.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    assert f'load_pretrained("hf://{repo}")' in (snapshot / "README.md").read_text(encoding="utf-8")
    assert file_sha256(snapshot / "model.safetensors") == file_sha256(folder1 / "model.safetensors")

    titles = [revision.title for revision in list_revisions(repo)]
    assert titles == ["second weights", "Upload tiny-test with sap 0.1.0"]
    assert [r.commit for r in list_revisions(repo)] == [push2.commit, push1.commit]


def test_pinned_commit_in_cache_needs_no_request(hub, repo, tmp_path):
    _, folder = tiny_export(tmp_path / "v1")
    push = push_to_hub(folder, repo)
    load_pretrained(push.uri)
    seen = len(hub.requests)
    load_pretrained(push.uri)
    assert len(hub.requests) == seen


def test_push_to_a_branch(hub, repo, tmp_path):
    main_model, main_folder = tiny_export(tmp_path / "main", seed=0)
    push_to_hub(main_folder, repo)
    branch_model, branch_folder = tiny_export(tmp_path / "exp", seed=1)
    result = push_to_hub(branch_folder, repo, revision="experiment")
    assert result.branch == "experiment"
    assert same_output(load_pretrained(f"hf://{repo}@experiment"), branch_model)
    assert same_output(load_pretrained(f"hf://{repo}"), main_model)


def test_tampered_cached_file_fails_the_hash_check_and_force_download_repairs(hub, repo, tmp_path):
    model, folder = tiny_export(tmp_path / "v1")
    push = push_to_hub(folder, repo)
    snapshot = pull_from_hub(repo, push.commit)
    blob = (snapshot / "model.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    os.chmod(blob, 0o644)
    blob.write_bytes(bytes(data))

    with pytest.raises(CacheIntegrityError, match="modified or corrupted after download"):
        load_pretrained(push.uri)
    # the same protection offline
    with pytest.raises(CacheIntegrityError):
        load_pretrained(push.uri, local_files_only=True)
    repaired = load_pretrained(push.uri, force_download=True)
    assert same_output(repaired, model)


def test_tampered_weights_with_matching_blob_name_fail_the_config_hash(hub, repo, tmp_path):
    """Even a file that passes the cache check must match the sha256 in config.json."""
    _, folder = tiny_export(tmp_path / "v1")
    push = push_to_hub(folder, repo)
    snapshot = pull_from_hub(repo, push.commit)
    # Replace the cached weights by another (self-consistent) safetensors file: the blob is
    # renamed to its own hash so only the recorded sha256 can tell.
    _, other = tiny_export(tmp_path / "other", seed=5)
    link = snapshot / "model.safetensors"
    blobs = link.resolve().parent
    from tests.helpers.hub_server import git_blob_sha1

    content = (other / "model.safetensors").read_bytes()
    new_blob = blobs / git_blob_sha1(content)
    new_blob.write_bytes(content)
    link.unlink()
    link.symlink_to(os.path.relpath(new_blob, snapshot))
    with pytest.raises(WeightsIntegrityError, match="config.json expects"):
        load_pretrained(push.uri)


def test_offline_mode_uses_the_prefilled_cache_without_any_request(
    hub, repo, tmp_path, monkeypatch
):
    model, folder = tiny_export(tmp_path / "v1")
    push = push_to_hub(folder, repo)
    load_pretrained(f"hf://{repo}")  # fills the cache, including refs/main
    seen = len(hub.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # set after import: honoured at call time
    assert same_output(load_pretrained(f"hf://{repo}"), model)
    assert same_output(load_pretrained(push.uri), model)
    assert len(hub.requests) == seen
    with pytest.raises(NotInCacheError, match="not in the Hugging Face cache") as info:
        load_pretrained(f"hf://{repo}@{'f' * 40}")
    assert "sap zoo pull" in str(info.value)
    with pytest.raises(HubError, match="offline mode is on"):
        push_to_hub(folder, repo)
    assert len(hub.requests) == seen


def test_local_files_only_on_an_empty_cache_is_a_clear_error(hub, repo):
    with pytest.raises(NotInCacheError, match="local_files_only=True"):
        pull_from_hub(repo, local_files_only=True)
    assert hub.requests == []


def test_unreachable_hub_fails_fast_and_says_how_to_go_offline(hub, repo, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", _closed_port_url())
    start = time.perf_counter()
    with pytest.raises(HubUnreachableError) as info:
        load_pretrained(f"hf://{repo}@main")
    assert time.perf_counter() - start < 5.0
    message = str(info.value)
    assert "Cannot reach the Hugging Face Hub" in message and "HF_HUB_OFFLINE=1" in message
    with pytest.raises(HubUnreachableError):
        list_revisions(repo)


def test_nonexistent_revision_and_repo_are_clear_errors(hub, repo, tmp_path):
    _, folder = tiny_export(tmp_path / "v1")
    push_to_hub(folder, repo)
    cache = Path(os.environ["HF_HUB_CACHE"])
    before = sorted(str(p.relative_to(cache)) for p in cache.rglob("*"))
    with pytest.raises(HubRevisionNotFoundError, match="Revision 'v9' does not exist"):
        load_pretrained(f"hf://{repo}@v9")
    with pytest.raises(HubRevisionNotFoundError, match="does not exist"):
        load_pretrained(f"hf://{repo}@{'a' * 40}")
    with pytest.raises(HubRepoNotFoundError, match="was not found"):
        load_pretrained("hf://sap-tests/no-such-repo")
    after = sorted(str(p.relative_to(cache)) for p in cache.rglob("*"))
    assert [p for p in after if "snapshots" in p] == [p for p in before if "snapshots" in p]


def test_interrupted_download_leaves_no_partial_file(hub, repo, tmp_path):
    model, folder = tiny_export(tmp_path / "v1")
    push = push_to_hub(folder, repo)
    hub.truncate_downloads.add("model.safetensors")
    with pytest.raises(HubError, match="broke off") as info:
        pull_from_hub(repo, push.commit)
    assert not isinstance(info.value, HubUnreachableError)
    cache = Path(os.environ["HF_HUB_CACHE"])
    blobs = [p for p in cache.rglob("blobs/*")]
    weights_size = (folder / "model.safetensors").stat().st_size
    assert all(p.stat().st_size != weights_size // 2 for p in blobs)
    assert not [p for p in cache.rglob("*.incomplete")]
    with pytest.raises(NotInCacheError):  # offline: the incomplete snapshot is not served
        pull_from_hub(repo, push.commit, local_files_only=True)
    hub.truncate_downloads.clear()
    assert same_output(load_pretrained(push.uri), model)


def test_push_refuses_a_folder_whose_weights_do_not_match_its_config(hub, repo, tmp_path):
    _, folder = tiny_export(tmp_path / "v1")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    with pytest.raises(HubError, match="Refusing to push"):
        push_to_hub(folder, repo)
    assert hub.requests == []


def test_pulling_a_repo_that_is_not_an_export_is_a_clear_error(hub, repo, tmp_path):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.url, token="hf_sap_tests_dummy_token")
    api.create_repo(repo)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "config.json").write_text("{}")
    api.upload_folder(folder_path=tmp_path / "notes", repo_id=repo)
    with pytest.raises(HubError, match="is not a sap model export"):
        pull_from_hub(repo)


def test_cli_push_pull_and_list_revisions(hub, repo, tmp_path, capsys):
    from sap.cli import main

    _, folder = tiny_export(tmp_path / "v1")
    assert main(["zoo", "push", str(folder), repo, "--message", "from the cli"]) == 0
    out = capsys.readouterr().out
    commit = out.split("commit: ")[1].split()[0]
    assert f"hf://{repo}@{commit}" in out
    assert main(["zoo", "pull", f"hf://{repo}@{commit}"]) == 0
    out = capsys.readouterr().out
    assert "verified: tiny-test (skeleton, tiny_unet" in out
    assert main(["zoo", "pull", repo, "--list-revisions"]) == 0
    assert "from the cli" in capsys.readouterr().out
    assert main(["zoo", "pull", repo, "--revision", "nope"]) == 1
    assert "Revision 'nope' does not exist" in capsys.readouterr().err


_FRESH_PROCESS = """
import os, sys
sys.path.insert(0, {tests!r})
from tests.helpers.hub_server import HubServer
from tests.helpers.zoo import same_output, tiny_export
hub = HubServer(); hub.start()
os.environ["HF_ENDPOINT"] = hub.url          # before huggingface_hub is imported
os.environ["HF_HOME"] = {home!r}
os.environ["HF_TOKEN"] = "hf_sap_tests_dummy_token"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
from pathlib import Path
from sap.zoo import load_pretrained, push_to_hub
model, folder = tiny_export(Path({home!r}) / "export")
push = push_to_hub(folder, "sap-tests/fresh")
assert same_output(load_pretrained(push.uri), model)
from huggingface_hub import constants
assert constants.ENDPOINT == hub.url and constants.HF_HUB_CACHE.startswith({home!r})
assert (Path({home!r}) / "hub" / "models--sap-tests--fresh").is_dir()
print("ok", push.commit)
"""


def test_env_set_before_import_works_in_a_fresh_process(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    script = _FRESH_PROCESS.format(tests=str(Path(__file__).parents[2]), home=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok ")


def test_zoo_entry_on_the_hub_is_pulled_at_its_pinned_commit_and_checked(
    hub, repo, tmp_path, monkeypatch
):
    from sap.zoo import catalogue

    first, folder1 = tiny_export(tmp_path / "v1", seed=0)
    push1 = push_to_hub(folder1, repo)
    _, folder2 = tiny_export(tmp_path / "v2", seed=1)
    push_to_hub(folder2, repo)  # main moves on; the entry stays pinned to the first commit
    catalogue_dir = tmp_path / "catalogue"
    catalogue_dir.mkdir()
    entry = catalogue_entry(
        name="sap-tiny-hub",
        labels=[f"c{i}" for i in range(10)],
        source={"hub": repo, "revision": push1.commit},
        sha256=file_sha256(folder1 / "model.safetensors"),
    )
    write_catalogue_entry(catalogue_dir, entry)
    monkeypatch.setenv("SAP_MODEL_ZOO", str(catalogue_dir))
    monkeypatch.setattr(catalogue, "BUNDLED_DIR", tmp_path / "no-bundles")
    assert same_output(load_pretrained("sap-tiny-hub"), first)

    entry["sha256"] = file_sha256(folder2 / "model.safetensors")  # an entry that disagrees
    write_catalogue_entry(catalogue_dir, entry)
    with pytest.raises(WeightsIntegrityError, match="the zoo catalogue entry / caller expects"):
        load_pretrained("sap-tiny-hub")
