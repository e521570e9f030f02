"""A local, in-memory Hugging Face Hub-compatible HTTP server for tests.

The Hub cannot be reached from the test machines, yet hf_tcs publishes students (`Trainer.push_to_hub`,
`Dataset.push_to_hub`, the CLI) and reads teachers back by repo id. `LocalHub` implements the part of the Hub HTTP
API that huggingface_hub 2.4, transformers 5.24 and datasets 5.2 actually call, so those code paths run unmodified
against it:

* write side (legacy, non-Xet path): `POST /api/repos/create`, `DELETE /api/repos/delete`,
  `POST /api/validate-yaml`, `POST /api/{type}s/{id}/preupload/{rev}`, the git-LFS "basic" transfer
  (`POST /{id}.git/info/lfs/objects/batch`, then `PUT` / verify `POST` on hrefs pointing back here),
  `POST /api/{type}s/{id}/commit/{rev}` (NDJSON) and `POST|DELETE /api/{type}s/{id}/branch/{branch}`;
* read side: `HEAD|GET /{id}/resolve/{rev}/{path}` (with byte ranges), `GET /api/{type}s/{id}[/revision/{rev}]`,
  `GET /api/{type}s/{id}/tree/{rev}[/{path}]` (cursor pagination through `Link` headers),
  `POST /api/{type}s/{id}/paths-info/{rev}`, `GET /api/{type}s/{id}/commits/{rev}`, `GET /api/{type}s/{id}/refs`
  and `GET /api/agent-harnesses` (fetched by huggingface_hub's user-agent code).

Dataset and Space repos use the `datasets/` and `spaces/` URL prefixes, as on the Hub. Revisions are branch names or
full 40-hex commit shas; anything else (e.g. `refs/convert/parquet`) is a `RevisionNotFound` 404. Errors carry the
`X-Error-Code` header that `hf_raise_for_status` maps to the typed exceptions. Whether a file is stored through LFS
is decided by the server, as on the Hub: `LFS_SUFFIXES` or more than `LFS_THRESHOLD` bytes.

Deliberately left out: authentication (any token or none is accepted, and recorded), pull requests
(`create_pr` gives a 400), tags, `.gitignore` handling in preupload, Xet storage, and the dataset viewer.

The server listens on 127.0.0.1 only, serves each request on its own daemon thread (at most
`max_concurrent_requests` at a time; further connections wait in the accept queue), rejects bodies above
`max_request_bytes` with a 413, times out idle sockets, and closes every connection after its response so no
thread lingers on a keep-alive socket. Every request is recorded in `LocalHub.requests`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode

import yaml

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".parquet", ".arrow", ".png", ".jpg", ".npz")
LFS_THRESHOLD = 10 * 1024 * 1024
# API path segment -> repo type, and repo type -> prefix of its web / resolve / LFS URLs.
API_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
SHA1_RE = re.compile(r"[0-9a-f]{40}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
REPO_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
EXPANDED_TREE_PAGE_SIZE = 50  # the Hub's page size when `expand=True`
# Variables that would make the in-process clients (or a subprocess) authenticate with a real token.
TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_OIDC_ID_TOKEN")


def _git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _iso(date: datetime) -> str:
    return date.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_front_matter(text: str) -> dict[str, Any]:
    """The YAML metadata block of a README (`{}` when there is none); ValueError if the block is invalid."""
    lines = text.lstrip().splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    end = next((i for i, line in enumerate(lines[1:], start=1) if line.strip() == "---"), None)
    if end is None:
        raise ValueError("the metadata block opened by '---' is never closed")
    try:
        metadata = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError as error:
        raise ValueError(f"invalid YAML in the metadata block: {error}") from error
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ValueError(f"the metadata must be a YAML mapping, got {type(metadata).__name__}")
    return metadata


@dataclass(frozen=True)
class Blob:
    """The content of one file in one commit; `lfs` says whether it was committed as an LFS pointer."""

    data: bytes
    lfs: bool

    @property
    def size(self) -> int:
        return len(self.data)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @cached_property
    def pointer(self) -> bytes:
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {self.size}\n".encode()

    @cached_property
    def git_oid(self) -> str:
        """The git blob id: of the content for regular files, of the LFS pointer file for LFS files (as in git)."""
        return _git_blob_oid(self.pointer if self.lfs else self.data)

    @property
    def etag(self) -> str:
        """What the Hub sends as ETag: the sha256 for LFS files, the git blob id otherwise."""
        return self.sha256 if self.lfs else self.git_oid


@dataclass(frozen=True)
class Commit:
    """One commit: its full file tree (path -> Blob), so any past revision can be served as it was."""

    oid: str
    parent: str | None
    title: str
    description: str
    date: datetime
    files: Mapping[str, Blob]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it. `route` is None for a URL the server does not implement."""

    method: str
    path: str
    headers: Mapping[str, str]  # lower-cased names
    route: str | None
    status: int


@dataclass
class _Repo:
    type: str
    id: str
    private: bool
    created: datetime
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)

    @property
    def url_path(self) -> str:
        return URL_PREFIXES[self.type] + self.id

    def resolve(self, revision: str) -> Commit:
        oid = self.branches.get(revision, revision)
        if oid not in self.commits:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return self.commits[oid]

    def history(self, commit: Commit) -> Iterator[Commit]:
        """`commit` and its ancestors, newest first."""
        current: Commit | None = commit
        while current is not None:
            yield current
            current = self.commits.get(current.parent) if current.parent else None


class HubError(Exception):
    """An HTTP error answer: status, message (body `{"error": ...}` and `X-Error-Message`), optional X-Error-Code."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, dict(headers or {})


def _tree_oid(entries: Mapping[str, Blob]) -> str:
    """A stable id for a folder (not git's tree hash: the clients only use it as an opaque id)."""
    listing = "".join(f"{path}\0{blob.git_oid}\n" for path, blob in sorted(entries.items()))
    return hashlib.sha1(listing.encode()).hexdigest()


def _under(files: Mapping[str, Blob], folder: str) -> dict[str, Blob]:
    """The files below `folder` ('' = the repo root)."""
    prefix = folder + "/" if folder else ""
    return {path: blob for path, blob in files.items() if path.startswith(prefix)}


def _check_path(path: Any) -> str:
    if not isinstance(path, str) or not path or path.startswith("/") or ".." in path.split("/") or "//" in path:
        raise HubError(400, f"Invalid path in repo: {path!r}")
    return path


class LocalHub:
    """The server and its in-memory store. Use as a context manager, or `start()` / `close()`.

    Args:
        username: namespace given to repos created without an organization (what `whoami` would say).
        home: the HF_HOME that `connect_clients` and `env` give the clients (caches and token path live there).
        max_request_bytes: larger request bodies get a 413 (memory bound: everything is kept in memory).
        max_concurrent_requests: requests served at once; more connections wait to be accepted.
        request_timeout: seconds a socket may stay silent before the server drops it.
        tree_page_size: entries per page of the tree listing (the Hub's is 1000; small values test pagination).
    """

    def __init__(
        self,
        *,
        username: str = "user",
        home: str | os.PathLike | None = None,
        max_request_bytes: int = 512 * 1024 * 1024,
        max_concurrent_requests: int = 32,
        request_timeout: float = 30.0,
        tree_page_size: int = 1000,
    ):
        self.username = username
        self.home = Path(home) if home is not None else None
        self.max_request_bytes = max_request_bytes
        self.request_timeout = request_timeout
        self.tree_page_size = tree_page_size
        self.server_errors: list[str] = []  # tracebacks of requests that crashed the server (500s)
        self._lock = threading.RLock()
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._requests: list[RecordedRequest] = []
        self._commit_counter = 0
        self._httpd = _Server(self, max_concurrent_requests)
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------------------------------- lifecycle
    @property
    def endpoint(self) -> str:
        host, port = self.server_address
        return f"http://{host}:{port}"

    @property
    def server_address(self) -> tuple[str, int]:
        return self._httpd.server_address[:2]

    def start(self) -> LocalHub:
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="local-hub", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop accepting requests and release the socket; requests in flight finish on their own threads."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------ test helpers
    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in order of completion."""
        with self._lock:
            return list(self._requests)

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        """The files of a repo at a revision (branch or commit sha), path -> content."""
        with self._lock:
            commit = self._repo_or_key_error(repo_id, repo_type).resolve(revision)
            return {path: blob.data for path, blob in commit.files.items()}

    def commits(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> list[Commit]:
        """The history of a revision, newest first (the first commit is the repo creation's)."""
        with self._lock:
            repo = self._repo_or_key_error(repo_id, repo_type)
            return list(repo.history(repo.resolve(revision)))

    def _repo_or_key_error(self, repo_id: str, repo_type: str) -> _Repo:
        try:
            return self._repos[(repo_type, repo_id)]
        except KeyError:
            raise KeyError(f"no {repo_type} repo {repo_id!r} on the local hub") from None

    # ------------------------------------------------------------------------------------------ client configuration
    @property
    def env(self) -> dict[str, str]:
        """Environment variables that make a fresh Python process use this server, online and without a token.

        Merge them into `os.environ` (from which `connect_clients` removed the token variables). datasets'
        `USE_PARQUET_EXPORT` has no variable: a subprocess `load_dataset` still tries the dataset viewer once.
        """
        env = {
            "HF_ENDPOINT": self.endpoint,
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_OFFLINE": "0",
            "HF_DATASETS_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "0",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_UPDATE_DOWNLOAD_COUNTS": "0",
        }
        if self.home is not None:
            env.update(
                HF_HOME=str(self.home),
                HF_HUB_CACHE=str(self.home / "hub"),
                HF_ASSETS_CACHE=str(self.home / "assets"),
                HF_TOKEN_PATH=str(self.home / "token"),
                HF_DATASETS_CACHE=str(self.home / "datasets"),
            )
        return env

    def connect_clients(self, monkeypatch) -> None:
        """Make this process's huggingface_hub, datasets, transformers (and evaluate, if imported) use the server.

        They read the endpoint, offline flags and cache paths once, at import, into module constants; those are
        patched here (and the variables of `env` set for anything imported later). Tokens are removed from the
        environment and the token file moves under `home`, so no real credential reaches the server.
        Leaves Xet off (uploads take the git-LFS path), telemetry and datasets' download counter off (they would
        leave the loopback), and datasets' dataset-viewer lookup off (it targets another host).
        """
        import datasets.config
        import huggingface_hub.constants as hub_constants
        import transformers.utils.hub
        from huggingface_hub.utils import _http

        for name, value in self.env.items():
            monkeypatch.setenv(name, value)
        for name in TOKEN_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        endpoint = self.endpoint
        patches: dict[Any, dict[str, Any]] = {
            hub_constants: {
                "ENDPOINT": endpoint,
                "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
                "HF_URL_HOSTS": hub_constants.HF_URL_HOSTS | {self.server_address[0]},
                "HF_HUB_OFFLINE": False,
                "HF_HUB_DISABLE_XET": True,
                "HF_HUB_DISABLE_TELEMETRY": True,
            },
            _http: {"_HUB_ORIGINS": _http._HUB_ORIGINS | {_http._url_origin(endpoint)}},
            datasets.config: {
                "HF_ENDPOINT": endpoint,
                "HUB_DATASETS_URL": endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}",
                "HF_HUB_OFFLINE": False,
                "HF_DATASETS_OFFLINE": False,
                "HF_UPDATE_DOWNLOAD_COUNTS": False,
                "USE_PARQUET_EXPORT": False,
            },
            transformers.utils.hub: {"_hf_api": None},  # the cached HfApi is rebuilt with the patched endpoint
        }
        if self.home is not None:
            home, downloads = self.home, self.home / "datasets" / datasets.config.DOWNLOADED_DATASETS_DIR
            patches[hub_constants].update(
                HF_HOME=str(home),
                HF_HUB_CACHE=str(home / "hub"),
                HF_ASSETS_CACHE=str(home / "assets"),
                HF_TOKEN_PATH=str(home / "token"),
                HF_STORED_TOKENS_PATH=str(home / "stored_tokens"),
                AGENT_HARNESSES_PATH=str(home / ".agent_harnesses.json"),
            )
            patches[datasets.config].update(
                HF_DATASETS_CACHE=home / "datasets",
                DOWNLOADED_DATASETS_PATH=downloads,
                EXTRACTED_DATASETS_PATH=downloads / datasets.config.EXTRACTED_DATASETS_DIR,
            )
        if "evaluate.config" in sys.modules:  # importing evaluate only to patch it would cost seconds
            evaluate_config = sys.modules["evaluate.config"]
            patches[evaluate_config] = {
                "HF_ENDPOINT": endpoint,
                "HF_LIST_ENDPOINT": endpoint + "/api/spaces?filter={type}",
                "HUB_EVALUATE_URL": endpoint + "/spaces/{path}/resolve/{revision}/{name}",
            }
        for module, values in patches.items():
            for name, value in values.items():
                monkeypatch.setattr(module, name, value)

    # --------------------------------------------------------------------------------------------------- the store
    def _repo(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
        return repo

    def _new_commit(
        self, repo: _Repo, parent: Commit | None, title: str, description: str, files: Mapping[str, Blob]
    ) -> Commit:
        """Record a commit; its sha hashes the repo, parent, title, tree and a counter, so it is unique and stable."""
        self._commit_counter += 1
        listing = "".join(f"{path} {blob.git_oid}\n" for path, blob in sorted(files.items()))
        seed = f"{repo.type}/{repo.id}\n{parent.oid if parent else ''}\n{title}\n{listing}{self._commit_counter}"
        commit = Commit(
            oid=hashlib.sha1(seed.encode()).hexdigest(),
            parent=parent.oid if parent else None,
            title=title,
            description=description,
            date=datetime.now(timezone.utc),
            files=MappingProxyType(dict(files)),
        )
        repo.commits[commit.oid] = commit
        return commit

    def _decide_lfs(self, path: str, size: int) -> bool:
        return path.lower().endswith(LFS_SUFFIXES) or size > LFS_THRESHOLD

    def _last_commit(self, repo: _Repo, commit: Commit, path: str, is_file: bool) -> dict[str, str]:
        """The newest commit in `commit`'s history that changed `path` (a file, or everything under a folder)."""

        def snapshot(c: Commit):
            if is_file:
                blob = c.files.get(path)
                return blob.git_oid if blob else None
            return _tree_oid(_under(c.files, path))

        current = commit
        for older in repo.history(commit):
            if snapshot(older) != snapshot(current):
                break
            current = older
        return {"id": current.oid, "title": current.title, "date": _iso(current.date)}

    def _entry(self, repo: _Repo, commit: Commit, path: str, expand: bool) -> dict[str, Any]:
        """A tree / paths-info entry for a file or folder that exists in `commit`."""
        blob = commit.files.get(path)
        if blob is not None:
            entry: dict[str, Any] = {"type": "file", "oid": blob.git_oid, "size": blob.size, "path": path}
            if blob.lfs:
                entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": len(blob.pointer)}
        else:
            entry = {"type": "directory", "oid": _tree_oid(_under(commit.files, path)), "size": 0, "path": path}
        if expand:
            entry["lastCommit"] = self._last_commit(repo, commit, path, is_file=blob is not None)
        return entry

    def _folders(self, files: Mapping[str, Blob]) -> set[str]:
        return {path.rsplit("/", i)[0] for path in files for i in range(1, path.count("/") + 1)}

    def _repo_info(self, repo: _Repo, commit: Commit, blobs: bool) -> dict[str, Any]:
        namespace = repo.id.split("/")[0]
        siblings = []
        for path, blob in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=blob.size, blobId=blob.git_oid)
                if blob.lfs:
                    sibling["lfs"] = {"size": blob.size, "sha256": blob.sha256, "pointerSize": len(blob.pointer)}
            siblings.append(sibling)
        info: dict[str, Any] = {
            "_id": hashlib.sha1(f"{repo.type}/{repo.id}".encode()).hexdigest()[:24],
            "id": repo.id,
            "author": namespace,
            "sha": commit.oid,
            "lastModified": _iso(commit.date),
            "createdAt": _iso(repo.created),
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(blob.size for blob in commit.files.values()),
        }
        readme = commit.files.get("README.md")
        if readme is not None:
            try:
                card_data = parse_front_matter(readme.data.decode("utf-8", "replace"))
            except ValueError:
                card_data = {}
            if card_data:
                info["cardData"] = card_data
        return info

    # -------------------------------------------------------------------------------------------- API: repositories
    def create_repo(self, body: dict[str, Any]) -> tuple[int, Any]:
        repo_type = body.get("type") or "model"
        if repo_type not in URL_PREFIXES:
            raise HubError(400, f"Invalid repo type: {repo_type!r}")
        name, namespace = body.get("name"), body.get("organization") or self.username
        for part in (name, namespace):
            if not isinstance(part, str) or not REPO_NAME_RE.fullmatch(part):
                raise HubError(400, f"Invalid repo name: {namespace}/{name}")
        repo_id = f"{namespace}/{name}"
        private = body.get("private") is True or body.get("visibility") == "private"
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                url = f"{self.endpoint}/{URL_PREFIXES[repo_type]}{repo_id}"
                return 409, {"error": f"You already created this {repo_type} repo", "url": url}
            repo = _Repo(repo_type, repo_id, private, created=datetime.now(timezone.utc))
            attributes = "".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES)
            initial = self._new_commit(
                repo, None, "initial commit", "", {".gitattributes": Blob(attributes.encode(), False)}
            )
            repo.branches["main"] = initial.oid
            self._repos[(repo_type, repo_id)] = repo
        return 200, {"url": f"{self.endpoint}/{repo.url_path}", "name": repo_id}

    def delete_repo(self, body: dict[str, Any]) -> tuple[int, Any]:
        repo_type = body.get("type") or "model"
        repo_id = f"{body.get('organization') or self.username}/{body.get('name')}"
        with self._lock:
            self._repo(repo_type, repo_id)
            del self._repos[(repo_type, repo_id)]
        return 200, {}

    def validate_yaml(self, body: dict[str, Any]) -> tuple[int, Any]:
        content = body.get("content")
        if not isinstance(content, str):
            return 400, {"errors": [{"message": "'content' must be a string"}]}
        try:
            parse_front_matter(content)
        except ValueError as error:
            return 400, {"errors": [{"message": str(error)}]}
        return 200, {}

    def repo_info(self, repo: _Repo, revision: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        blobs = query.get("blobs", ["false"])[-1].lower() in ("1", "true")
        return 200, self._repo_info(repo, repo.resolve(revision), blobs)

    def refs(self, repo: _Repo) -> tuple[int, Any]:
        branches = [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid}
            for name, oid in sorted(repo.branches.items())
        ]
        return 200, {"branches": branches, "converts": [], "tags": [], "pullRequests": []}

    def create_branch(self, repo: _Repo, branch: str, body: dict[str, Any]) -> tuple[int, Any]:
        if branch in repo.branches:
            raise HubError(409, f"Reference already exists: refs/heads/{branch}")
        if not branch or SHA1_RE.fullmatch(branch) or branch.startswith("refs/"):
            raise HubError(400, f"Invalid branch name: {branch!r}")
        repo.branches[branch] = repo.resolve(body.get("startingPoint") or "main").oid
        return 200, {}

    def delete_branch(self, repo: _Repo, branch: str) -> tuple[int, Any]:
        if branch == "main":
            raise HubError(403, "Cannot delete the default branch")
        if branch not in repo.branches:
            raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        del repo.branches[branch]
        return 200, {}

    # ---------------------------------------------------------------------------------------------- API: read side
    def tree(self, repo: _Repo, revision: str, folder: str, query: dict[str, list[str]]) -> tuple[int, Any, dict]:
        commit = repo.resolve(revision)
        folder = folder.strip("/")
        if folder and folder not in self._folders(commit.files):
            raise HubError(404, f"Entry not found: {folder}", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        recursive = query.get("recursive", ["false"])[-1].lower() in ("1", "true")
        expand = query.get("expand", ["false"])[-1].lower() in ("1", "true")
        below = _under(commit.files, folder)
        paths = set(below) | {p for p in self._folders(below) if p.startswith(folder + "/") or not folder}
        if not recursive:
            depth = folder.count("/") + 1 if folder else 0
            paths = {path for path in paths if path.count("/") == depth}
        ordered = sorted(paths)
        page_size = EXPANDED_TREE_PAGE_SIZE if expand else self.tree_page_size
        start = int(query.get("cursor", ["0"])[-1] or 0)
        page = [self._entry(repo, commit, path, expand) for path in ordered[start : start + page_size]]
        headers = {}
        if start + page_size < len(ordered):
            next_query = urlencode({"recursive": recursive, "expand": expand, "cursor": start + page_size})
            url = f"{self.endpoint}/api/{repo.type}s/{repo.id}/tree/{quote(revision, safe='')}"
            url += f"/{quote(folder, safe='')}" if folder else ""
            headers["Link"] = f'<{url}?{next_query}>; rel="next"'
        return 200, page, headers

    def paths_info(self, repo: _Repo, revision: str, form: dict[str, list[str]]) -> tuple[int, Any]:
        commit = repo.resolve(revision)
        expand = form.get("expand", ["false"])[-1].lower() in ("1", "true")
        folders = self._folders(commit.files)
        paths = [path.strip("/") for path in form.get("paths", [])]
        found = [path for path in paths if path in commit.files or path in folders]
        return 200, [self._entry(repo, commit, path, expand) for path in found]

    def list_commits(self, repo: _Repo, revision: str) -> tuple[int, Any]:
        items = []
        for commit in repo.history(repo.resolve(revision)):
            message = commit.title + (f"\n\n{commit.description}" if commit.description else "")
            items.append(
                {
                    "id": commit.oid,
                    "title": commit.title,
                    "message": message,
                    "authors": [{"user": self.username, "avatar": None}],
                    "date": _iso(commit.date),
                }
            )
        return 200, items

    def resolve_file(self, repo: _Repo, revision: str, path: str) -> tuple[Commit, Blob]:
        commit = repo.resolve(revision)
        blob = commit.files.get(path)
        if blob is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        return commit, blob

    # --------------------------------------------------------------------------------------------- API: write side
    def preupload(self, repo: _Repo, revision: str, body: dict[str, Any]) -> tuple[int, Any]:
        commit = repo.resolve(revision)
        answers = []
        for item in body.get("files") or []:
            path, size = _check_path(item.get("path")), item.get("size")
            if not isinstance(size, int) or size < 0:
                raise HubError(400, f"Invalid size for {path}: {size!r}")
            lfs = self._decide_lfs(path, size)
            existing = commit.files.get(path)
            # The client skips a file whose oid it finds here unchanged (sha256 for LFS, git sha1 otherwise).
            oid = None
            if existing is not None and existing.lfs == lfs:
                oid = existing.sha256 if lfs else existing.git_oid
            answers.append(
                {"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid}
            )
        return 200, {"files": answers}

    def lfs_batch(self, repo: _Repo, body: dict[str, Any]) -> tuple[int, Any]:
        if body.get("operation") != "upload":
            raise HubError(422, f"Unsupported LFS operation: {body.get('operation')!r}")
        if "basic" not in (body.get("transfers") or ["basic"]):
            raise HubError(422, "Only the 'basic' LFS transfer is supported")
        objects = []
        for item in body.get("objects") or []:
            oid, size = item.get("oid"), item.get("size")
            if not isinstance(oid, str) or not SHA256_RE.fullmatch(oid) or not isinstance(size, int) or size < 0:
                objects.append({"oid": str(oid), "size": 0, "error": {"code": 422, "message": "Invalid oid or size"}})
            elif size > self.max_request_bytes:
                message = f"Object too large ({size} > {self.max_request_bytes} bytes)"
                objects.append({"oid": oid, "size": size, "error": {"code": 413, "message": message}})
            elif oid in repo.lfs_objects:
                objects.append({"oid": oid, "size": size})  # no actions: already stored
            else:
                href = f"{self.endpoint}/_lfs/{repo.type}s/{repo.id}/{oid}"
                actions = {"upload": {"href": href, "header": {}}, "verify": {"href": f"{href}/verify", "header": {}}}
                objects.append({"oid": oid, "size": size, "authenticated": True, "actions": actions})
        return 200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}

    def lfs_put(self, repo_type: str, repo_id: str, oid: str, data: bytes) -> tuple[int, Any]:
        actual = hashlib.sha256(data).hexdigest()  # outside the lock: bodies can be large
        if actual != oid:
            raise HubError(400, f"sha256 mismatch: the URL says {oid}, the body hashes to {actual}")
        with self._lock:
            self._repo(repo_type, repo_id).lfs_objects[oid] = data
        return 200, {}

    def lfs_verify(self, repo: _Repo, oid: str, body: dict[str, Any]) -> tuple[int, Any]:
        data = repo.lfs_objects.get(oid)
        if data is None or body.get("oid") != oid:
            raise HubError(404, f"LFS object {oid} was not uploaded")
        if body.get("size") != len(data):
            raise HubError(422, f"LFS object {oid} has {len(data)} bytes, not {body.get('size')}")
        return 200, {}

    def commit(self, repo: _Repo, revision: str, lines: list[dict[str, Any]]) -> tuple[int, Any]:
        if revision not in repo.branches:
            repo.resolve(revision)  # 404 for an unknown revision
            raise HubError(400, f"Commits go to a branch, not to {revision!r}")
        head = repo.commits[repo.branches[revision]]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first line of a commit must be its header")
        header = lines[0].get("value") or {}
        parent = header.get("parentCommit")
        if parent is not None and parent != head.oid:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(head.files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value") or {}
            path = _check_path(value.get("path", "").rstrip("/") if key == "deletedFolder" else value.get("path"))
            if key == "file":
                content = value.get("content", "")
                data = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                files[path] = Blob(data, lfs=False)
            elif key == "lfsFile":
                data = repo.lfs_objects.get(value.get("oid"))
                if data is None or value.get("size", len(data)) != len(data):
                    raise HubError(422, f"{path}: the LFS object {value.get('oid')} of that size was never uploaded")
                files[path] = Blob(data, lfs=True)
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
            elif key == "deletedFolder":
                doomed = _under(files, path)
                if not doomed:
                    raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
                for doomed_path in doomed:
                    del files[doomed_path]
            else:
                raise HubError(400, f"Unknown commit operation: {key!r}")
        title = header.get("summary") or "Update files"
        commit = self._new_commit(repo, head, title, header.get("description") or "", files)
        repo.branches[revision] = commit.oid
        url = f"{self.endpoint}/{repo.url_path}/commit/{commit.oid}"
        return 200, {"success": True, "commitOid": commit.oid, "commitUrl": url, "hookOutput": ""}


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer on 127.0.0.1:<free port> with a bound on the requests served at once."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, hub: LocalHub, max_concurrent_requests: int):
        self.hub = hub
        self._slots = threading.BoundedSemaphore(max_concurrent_requests)
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request, client_address):
        self._slots.acquire()  # blocking the accept loop is the back-pressure: extra connections wait in the backlog
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Handler(BaseHTTPRequestHandler):
    """Parses one request, routes it to `LocalHub`, writes the answer, records it, then closes the connection.

    Work on the store happens under the hub's lock; writing the answer to the socket happens outside it, so a slow
    client never stalls the others.
    """

    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: no thread waits on an idle keep-alive socket
    # (route, methods) of the per-repo API, by (action segment, number of segments after the repo id; None = any).
    REPO_API_ROUTES = {
        ("revision", None): ("repo-info", ("GET",)),
        ("tree", None): ("tree", ("GET",)),
        ("paths-info", 2): ("paths-info", ("POST",)),
        ("commits", 2): ("commits", ("GET",)),
        ("refs", 1): ("refs", ("GET",)),
        ("branch", 2): ("branch", ("POST", "DELETE")),
        ("preupload", 2): ("preupload", ("POST",)),
        ("commit", 2): ("commit", ("POST",)),
    }

    def setup(self):
        self.timeout = self.server.hub.request_timeout
        super().setup()

    def log_message(self, format, *args):
        """Silence the per-request stderr log: requests are recorded in `LocalHub.requests` instead."""

    def do_GET(self):
        self._handle()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    # --------------------------------------------------------------------------------------------------- plumbing
    def _handle(self) -> None:
        hub = self.server.hub
        self._route: str | None = None
        self._status = 0
        self._recorded = False
        try:
            try:
                self._dispatch(hub)
            except HubError as error:
                self._send_error(error)
            except OSError:
                raise
            except Exception:
                hub.server_errors.append(traceback.format_exc())
                self._send_error(HubError(500, "Internal error of the local hub (see LocalHub.server_errors)"))
        except OSError:  # the client went away or stalled past the timeout: nothing left to answer
            self.close_connection = True
        finally:
            if not self._recorded:  # no answer was sent
                self._record()

    def _record(self) -> None:
        """Add this request to `LocalHub.requests`; before its answer goes out, so a client sees it once answered."""
        headers = {name.lower(): value for name, value in self.headers.items()}
        record = RecordedRequest(self.command, self.path, MappingProxyType(headers), self._route, self._status)
        with self.server.hub._lock:
            self.server.hub._requests.append(record)
        self._recorded = True

    def _read_body(self) -> bytes:
        limit = self.server.hub.max_request_bytes
        too_large = HubError(413, f"Request body larger than {limit} bytes")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while True:
                try:
                    size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
                except ValueError:
                    raise HubError(400, "Invalid chunked encoding") from None
                if size == 0:
                    while self.rfile.readline(1024).strip():  # trailers
                        pass
                    return b"".join(chunks)
                total += size
                if total > limit:
                    raise too_large
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise HubError(400, "Invalid Content-Length") from None
        if length > limit:
            # Read (and drop) up to 1 MiB so that a modest overshoot gets the 413 rather than a connection reset.
            self.rfile.read(min(length, 1024 * 1024))
            raise too_large
        body = self.rfile.read(length)
        if len(body) != length:
            raise ConnectionError("the client closed the connection before sending its whole body")
        return body

    def _json_body(self) -> Any:
        try:
            return json.loads(self._read_body() or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise HubError(400, f"Invalid JSON body: {error}") from None

    def _send(self, status: int, body: bytes, headers: Mapping[str, str], content_type: str) -> None:
        self._status = status
        self._record()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        body = json.dumps(payload, default=str).encode()  # default=str: YAML card data may hold dates
        self._send(status, body, headers or {}, "application/json; charset=utf-8")

    def _send_error(self, error: HubError) -> None:
        headers = dict(error.headers)
        headers["X-Error-Message"] = error.message.encode("ascii", "replace").decode()
        if error.code:
            headers["X-Error-Code"] = error.code
        self._send_json(error.status, {"error": error.message}, headers)

    def _enter(self, route: str, *methods: str) -> None:
        self._route = route
        if self.command not in methods:
            raise HubError(405, f"{self.command} is not allowed on {route} (allowed: {', '.join(methods)})")

    # ---------------------------------------------------------------------------------------------------- routing
    def _dispatch(self, hub: LocalHub) -> None:
        raw_path, _, raw_query = self.path.partition("?")
        query = parse_qs(raw_query, keep_blank_values=True)
        segments = raw_path.lstrip("/").split("/")  # still percent-encoded: an encoded '/' stays in its segment
        if segments[0] == "api":
            self._dispatch_api(hub, segments[1:], query)
        elif segments[0] == "_lfs" and len(segments) in (5, 6) and segments[1] in API_TYPES:
            repo_type, repo_id, oid = API_TYPES[segments[1]], f"{segments[2]}/{segments[3]}", segments[4]
            if len(segments) == 5:
                self._enter("lfs-upload", "PUT")
                answer = hub.lfs_put(repo_type, repo_id, oid, self._read_body())
            elif segments[5] == "verify":
                self._enter("lfs-verify", "POST")
                body = self._json_body()
                with hub._lock:
                    answer = hub.lfs_verify(hub._repo(repo_type, repo_id), oid, body)
            else:
                raise HubError(404, "Sorry, we can't find the page you are looking for.")
            self._send_json(*answer)
        else:
            self._dispatch_web(hub, segments)

    def _dispatch_api(self, hub: LocalHub, segments: list[str], query: dict[str, list[str]]) -> None:
        if segments == ["repos", "create"]:
            self._enter("create-repo", "POST")
            answer = hub.create_repo(self._json_body())
        elif segments == ["repos", "delete"]:
            self._enter("delete-repo", "DELETE")
            answer = hub.delete_repo(self._json_body())
        elif segments == ["validate-yaml"]:
            self._enter("validate-yaml", "POST")
            answer = hub.validate_yaml(self._json_body())
        elif segments == ["agent-harnesses"]:
            self._enter("agent-harnesses", "GET")
            answer = 200, {"standardEnvVars": [], "harnesses": {}}
        elif len(segments) >= 3 and segments[0] in API_TYPES:
            repo_type, repo_id = API_TYPES[segments[0]], f"{unquote(segments[1])}/{unquote(segments[2])}"
            answer = self._repo_api(hub, repo_type, repo_id, segments[3:], query)
        else:
            raise HubError(404, "Sorry, we can't find the page you are looking for.")
        self._send_json(*answer)

    def _repo_api(self, hub: LocalHub, repo_type: str, repo_id: str, rest: list[str], query) -> tuple:
        """Answer `/api/{type}s/{namespace}/{name}/{rest...}`."""
        if not rest:
            route, methods = "repo-info", ("GET",)
        else:
            key = (rest[0], None if rest[0] in ("revision", "tree") else len(rest))
            if key not in self.REPO_API_ROUTES or (key[1] is None and len(rest) < 2):
                raise HubError(404, "Sorry, we can't find the page you are looking for.")
            route, methods = self.REPO_API_ROUTES[key]
        self._enter(route, *methods)
        revision = unquote(rest[1]) if len(rest) > 1 else "main"
        if route in ("preupload", "commit") and query.get("create_pr", ["0"])[-1] not in ("0", "false", ""):
            raise HubError(400, "Pull requests are not supported by the local hub")
        body = self._read_body() if self.command in ("POST", "DELETE") else b""
        with hub._lock:
            repo = hub._repo(repo_type, repo_id)
            if route == "repo-info":
                return hub.repo_info(repo, unquote("/".join(rest[1:])) if rest else "main", query)
            if route == "tree":
                return hub.tree(repo, revision, unquote("/".join(rest[2:])), query)
            if route == "paths-info":
                return hub.paths_info(repo, revision, parse_qs(body.decode(), keep_blank_values=True))
            if route == "commits":
                return hub.list_commits(repo, revision)
            if route == "refs":
                return hub.refs(repo)
            if route == "branch" and self.command == "POST":
                return hub.create_branch(repo, revision, _parse_json(body))
            if route == "branch":
                return hub.delete_branch(repo, revision)
            if route == "preupload":
                return hub.preupload(repo, revision, _parse_json(body))
            try:
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise HubError(400, f"Invalid NDJSON body: {error}") from None
            return hub.commit(repo, revision, lines)

    def _dispatch_web(self, hub: LocalHub, segments: list[str]) -> None:
        repo_type = "model"
        if segments[0] in ("datasets", "spaces"):
            repo_type, segments = API_TYPES[segments[0]], segments[1:]
        if len(segments) >= 4 and segments[2] == "resolve":
            self._enter("resolve", "GET", "HEAD")
            repo_id, revision = f"{unquote(segments[0])}/{unquote(segments[1])}", unquote(segments[3])
            with hub._lock:
                commit, blob = hub.resolve_file(
                    hub._repo(repo_type, repo_id), revision, unquote("/".join(segments[4:]))
                )
            self._send_file(commit, blob)
        elif (
            len(segments) == 6 and segments[1].endswith(".git") and segments[2:] == ["info", "lfs", "objects", "batch"]
        ):
            self._enter("lfs-batch", "POST")
            body = self._json_body()
            repo_id = f"{unquote(segments[0])}/{unquote(segments[1])[: -len('.git')]}"
            with hub._lock:
                status, payload = hub.lfs_batch(hub._repo(repo_type, repo_id), body)
            self._send(status, json.dumps(payload).encode(), {}, "application/vnd.git-lfs+json")
        else:
            raise HubError(404, "Sorry, we can't find the page you are looking for.")

    def _send_file(self, commit: Commit, blob: Blob) -> None:
        """The file, or the byte range asked for, with the metadata headers `hf_hub_download` relies on."""
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{blob.etag}"', "Accept-Ranges": "bytes"}
        if blob.lfs:
            headers.update({"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(blob.size)})
        size, status, data = blob.size, 200, blob.data
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        if match and (match[1] or match[2]):
            if match[1]:
                start, end = int(match[1]), int(match[2]) if match[2] else size - 1
            else:
                start, end = max(size - int(match[2]), 0), size - 1
            end = min(end, size - 1)
            if start >= size or end < start:
                raise HubError(416, "Range Not Satisfiable", headers={"Content-Range": f"bytes */{size}"})
            status, data = 206, blob.data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        self._send(status, data, headers, "application/octet-stream")


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HubError(400, f"Invalid JSON body: {error}") from None
