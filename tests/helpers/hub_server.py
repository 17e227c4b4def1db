"""A tiny Hugging Face Hub look-alike for tests: the real ``huggingface_hub`` client talks to it.

Why it exists: the test machines have no internet, yet ``sap.zoo.hub`` must be tested through the
real client code (``create_repo``, ``upload_folder``, ``snapshot_download``, ``list_repo_commits``),
not through mocks that would agree with whatever we wrote. This server implements just the REST
endpoints those calls use, in memory, with the standard library only (``http.server`` +
``threading``). It serves every file as a *regular* git blob (the preupload answer is always
``"regular"``), so no LFS or Xet storage protocol is involved.

Endpoints (``<type>`` is ``models``; revisions arrive URL-quoted):

- ``POST /api/repos/create``                     create a repo (409 when it exists)
- ``POST /api/validate-yaml``                    model-card metadata check (always valid)
- ``POST /api/<type>/<repo>/preupload/<rev>``    answers ``uploadMode: regular`` for each file
- ``POST /api/<type>/<repo>/commit/<rev>``       NDJSON commit (``header``, ``file``, ``deletedFile``)
- ``POST /api/<type>/<repo>/branch/<branch>``    create a branch
- ``GET  /api/<type>/<repo>[/revision/<rev>]``   repo info (``sha`` = resolved commit)
- ``GET  /api/<type>/<repo>/tree/<rev>[/<path>]`` file listing
- ``GET  /api/<type>/<repo>/commits/<rev>``      history, newest first
- ``GET  /api/<type>/<repo>/refs``               branches
- ``HEAD|GET /<repo>/resolve/<rev>/<path>``      file metadata (``ETag``, ``X-Repo-Commit``) / content

Errors carry the ``X-Error-Code`` header (``RepoNotFound``, ``RevisionNotFound``,
``EntryNotFound``) that ``huggingface_hub`` turns into its typed exceptions.

Usage::

    with HubServer() as hub:
        os.environ["HF_ENDPOINT"] = hub.url
        ...
        hub.requests   # [(method, path), ...] every request seen, for "no network" assertions
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

_COMMIT_HASH = re.compile(r"^[0-9a-f]{40}$")
_REPO_TYPES = ("models", "datasets", "spaces")


def git_blob_sha1(content: bytes) -> str:
    """The git object id of a blob, which the Hub uses as the ETag of regular files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class _Commit:
    oid: str
    parent: str | None
    title: str
    message: str
    date: str
    files: dict[str, bytes]


@dataclass
class _Repo:
    repo_id: str
    commits: dict[str, _Commit] = field(default_factory=dict)
    branches: dict[str, str | None] = field(default_factory=lambda: {"main": None})

    def resolve(self, revision: str) -> _Commit | None:
        if revision in self.branches:
            oid = self.branches[revision]
            return None if oid is None else self.commits[oid]
        if _COMMIT_HASH.match(revision):
            return self.commits.get(revision)
        return None


class _HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, commit: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.commit = status, code, message, commit


class HubServer:
    """In-memory Hub on ``127.0.0.1`` (port chosen by the OS). Thread-safe; use as a context manager.

    Attributes:
        url: base URL to put in ``HF_ENDPOINT``.
        requests: ``(method, path)`` of every request received, in order.
        truncate_downloads: repo file paths whose ``GET`` body is cut in half (simulates a
            connection dropped mid-download).
    """

    def __init__(self) -> None:
        self.repos: dict[str, _Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.truncate_downloads: set[str] = set()
        self._lock = threading.Lock()
        self._counter = 0
        server = self

        class Handler(_Handler):
            hub = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # quick shutdown between tests
            name="hub-server",
            daemon=True,
        )

    def __enter__(self) -> HubServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------ repo operations

    def _repo(self, repo_id: str) -> _Repo:
        repo = self.repos.get(repo_id)
        if repo is None:
            raise _HubError(404, "RepoNotFound", f"Repository {repo_id} not found")
        return repo

    def _commit_at(self, repo: _Repo, revision: str) -> _Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return commit

    def create_repo(self, repo_id: str) -> bool:
        with self._lock:
            if repo_id in self.repos:
                return False
            self.repos[repo_id] = _Repo(repo_id)
            return True

    def create_branch(self, repo_id: str, branch: str, starting_point: str | None) -> None:
        with self._lock:
            repo = self._repo(repo_id)
            if branch in repo.branches:
                raise _HubError(409, None, f"Branch {branch} already exists")
            head = (
                repo.branches["main"]
                if starting_point is None
                else self._commit_at(repo, starting_point).oid
            )
            repo.branches[branch] = head

    def commit(self, repo_id: str, branch: str, lines: list[dict]) -> str:
        with self._lock:
            repo = self._repo(repo_id)
            if branch not in repo.branches:
                raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {branch}")
            parent = repo.branches[branch]
            files = dict(repo.commits[parent].files) if parent else {}
            header: dict = {}
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "header":
                    header = value
                elif key == "file":
                    if value.get("encoding") != "base64":
                        raise _HubError(400, None, "only base64 file content is supported")
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                else:
                    raise _HubError(
                        400, None, f"unsupported commit operation {key!r} (test server)"
                    )
            self._counter += 1
            oid = hashlib.sha1(f"{repo_id}:{parent}:{self._counter}".encode()).hexdigest()
            date = (
                dt.datetime(2025, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=self._counter)
            ).isoformat()
            repo.commits[oid] = _Commit(
                oid=oid,
                parent=parent,
                title=header.get("summary", ""),
                message=header.get("description", ""),
                date=date.replace("+00:00", ".000Z"),
                files=files,
            )
            repo.branches[branch] = oid
            return oid

    def snapshot(self, repo_id: str, revision: str) -> tuple[str, dict[str, bytes]]:
        """``(commit id, {path: content})`` of a revision; raises the Hub's typed errors."""
        with self._lock:
            commit = self._commit_at(self._repo(repo_id), revision)
            return commit.oid, dict(commit.files)

    def history(self, repo_id: str, revision: str) -> list[_Commit]:
        with self._lock:
            repo = self._repo(repo_id)
            commit: _Commit | None = self._commit_at(repo, revision)
            out = []
            while commit is not None:
                out.append(commit)
                commit = repo.commits[commit.parent] if commit.parent else None
            return out


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        return

    # ------------------------------------------------------------------ plumbing

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(
        self, payload: object, status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        self._send(
            status,
            json.dumps(payload).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        self.hub.requests.append((self.command, path))
        try:
            self._route(path, parse_qs(parts.query))
        except _HubError as err:
            headers = {"X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
            if err.commit:
                headers["X-Repo-Commit"] = err.commit
            self._json({"error": err.message}, status=err.status, headers=headers)

    do_GET = do_HEAD = do_POST = _dispatch

    # ------------------------------------------------------------------ routes

    def _route(self, path: str, query: dict[str, list[str]]) -> None:
        hub = self.hub
        if self.command == "POST" and path == "/api/repos/create":
            payload = json.loads(self._body())
            repo_id = (
                f"{payload['organization']}/{payload['name']}"
                if payload.get("organization")
                else payload["name"]
            )
            url = f"{hub.url}/{repo_id}"
            if not hub.create_repo(repo_id):
                # The real Hub also returns the url with the 409; `create_repo(exist_ok=True)` reads it.
                msg = "You already created this model repo"
                return self._json(
                    {"error": msg, "url": url}, status=409, headers={"X-Error-Message": msg}
                )
            return self._json({"url": url, "name": repo_id})
        if self.command == "POST" and path == "/api/validate-yaml":
            self._body()
            return self._json({"errors": [], "warnings": []})

        match = re.match(r"^/api/(models|datasets|spaces)/([^/]+/[^/]+)(?:/(.*))?$", path)
        if match:
            return self._api(match.group(2), match.group(3) or "", query)

        match = re.match(r"^/([^/]+/[^/]+)/resolve/(.+)$", path)
        if match and self.command in ("GET", "HEAD"):
            return self._resolve(match.group(1), match.group(2))
        raise _HubError(404, None, f"test hub server: no route for {self.command} {path}")

    def _split_revision(self, repo_id: str, rest: str) -> tuple[str, str]:
        """Split ``<revision>/<path>``; branch names may not contain '/' here, which keeps it simple."""
        revision, _, file_path = rest.partition("/")
        return revision, file_path

    def _api(self, repo_id: str, rest: str, query: dict[str, list[str]]) -> None:
        hub = self.hub
        action, _, tail = rest.partition("/")
        if self.command == "GET" and action in ("", "revision"):
            revision = tail or "main"
            oid, files = hub.snapshot(repo_id, revision)
            return self._json(
                {
                    "id": repo_id,
                    "sha": oid,
                    "private": False,
                    "siblings": [{"rfilename": name} for name in sorted(files)],
                }
            )
        if self.command == "POST" and action == "preupload":
            payload = json.loads(self._body())
            repo = hub._repo(repo_id)
            head = repo.resolve(tail)
            existing = head.files if head else {}
            return self._json(
                {
                    "files": [
                        {
                            "path": item["path"],
                            "uploadMode": "regular",
                            "shouldIgnore": False,
                            "oid": git_blob_sha1(existing[item["path"]])
                            if item["path"] in existing
                            else None,
                        }
                        for item in payload["files"]
                    ]
                }
            )
        if self.command == "POST" and action == "commit":
            lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
            oid = hub.commit(repo_id, tail, lines)
            return self._json(
                {
                    "commitUrl": f"{hub.url}/{repo_id}/commit/{oid}",
                    "commitOid": oid,
                    "success": True,
                }
            )
        if self.command == "POST" and action == "branch":
            body = self._body()
            payload = json.loads(body) if body else {}
            hub.create_branch(repo_id, tail, payload.get("startingPoint"))
            return self._json({})
        if self.command == "GET" and action == "tree":
            revision, prefix = self._split_revision(repo_id, tail)
            oid, files = hub.snapshot(repo_id, revision)
            entries = [
                {"type": "file", "path": name, "size": len(content), "oid": git_blob_sha1(content)}
                for name, content in sorted(files.items())
                if not prefix or name.startswith(prefix.rstrip("/") + "/")
            ]
            return self._json(entries)
        if self.command == "GET" and action == "commits":
            return self._json(
                [
                    {
                        "id": c.oid,
                        "title": c.title,
                        "message": c.message,
                        "date": c.date,
                        "authors": [{"user": "sap-tests"}],
                    }
                    for c in hub.history(repo_id, tail or "main")
                ]
            )
        if self.command == "GET" and action == "refs":
            repo = hub._repo(repo_id)
            branches = [
                {"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid}
                for name, oid in repo.branches.items()
                if oid is not None
            ]
            return self._json({"branches": branches, "tags": [], "converts": []})
        raise _HubError(404, None, f"test hub server: no API route for {self.command} {action!r}")

    def _resolve(self, repo_id: str, rest: str) -> None:
        revision, file_path = self._split_revision(repo_id, rest)
        oid, files = self.hub.snapshot(repo_id, revision)
        if file_path not in files:
            raise _HubError(
                404, "EntryNotFound", f"{file_path} does not exist at {revision}", commit=oid
            )
        content = files[file_path]
        headers = {
            "ETag": f'"{git_blob_sha1(content)}"',
            "X-Repo-Commit": oid,
            "Content-Type": "application/octet-stream",
            "Content-Length": str(len(content)),
        }
        if self.command == "GET" and file_path in self.hub.truncate_downloads:
            # Promise the full length, send half, then drop the connection.
            self._send(200, content[: len(content) // 2], headers)
            self.close_connection = True
            return
        self._send(200, content, headers)


__all__ = ["HubServer", "git_blob_sha1"]
