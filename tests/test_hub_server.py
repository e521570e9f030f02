"""The local Hub server (tests/hub_server.py), exercised through the real huggingface_hub, transformers and datasets
clients: what they push must come back identical by repo id, and what is missing must raise their typed errors."""

import hashlib
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import datasets
import pytest
import torch
from hub_server import LocalHub
from huggingface_hub import (
    CommitOperationAdd,
    HfApi,
    HfFileSystem,
    RepoFile,
    RepoFolder,
    hf_hub_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from tiny_models import tiny_vit_kwargs


def _served(hub: LocalHub) -> None:
    """Every request the clients made hit an implemented route and none crashed the server."""
    unknown = [(r.method, r.path) for r in hub.requests if r.route is None]
    assert not unknown, f"the clients used routes the local hub does not implement: {unknown}"
    assert all(r.status < 500 for r in hub.requests)


def test_create_repo_namespaces_and_conflicts(local_hub):
    api = HfApi()
    url = api.create_repo("user/tiny")
    assert url.repo_id == "user/tiny" and url.startswith(local_hub.endpoint)
    with pytest.raises(HfHubHTTPError) as conflict:
        api.create_repo("user/tiny")
    assert conflict.value.response.status_code == 409
    assert api.create_repo("user/tiny", exist_ok=True).repo_id == "user/tiny"

    assert api.create_repo("plain").repo_id == "user/plain"  # no namespace given: the server's user
    dataset_url = api.create_repo("org/data", repo_type="dataset")
    assert dataset_url.repo_type == "dataset" and dataset_url == f"{local_hub.endpoint}/datasets/org/data"
    assert api.repo_exists("org/data", repo_type="dataset") and not api.repo_exists("org/data")
    assert set(local_hub.files("user/tiny")) == {".gitattributes"}  # a new repo has its initial commit

    api.delete_repo("user/plain")
    assert not api.repo_exists("user/plain")
    _served(local_hub)


def test_model_pushed_with_upload_folder_loads_back_by_repo_id(local_hub, tmp_path):
    from transformers import (
        AutoImageProcessor,
        AutoModelForImageClassification,
        ViTConfig,
        ViTForImageClassification,
        ViTImageProcessor,
    )

    torch.manual_seed(0)
    config = ViTConfig(**tiny_vit_kwargs(), num_labels=3)
    model = ViTForImageClassification(config).eval()
    processor = ViTImageProcessor(size={"height": 32, "width": 32})
    folder = tmp_path / "tiny"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)

    api = HfApi()
    api.create_repo("user/tiny")
    api.upload_folder(folder_path=folder, repo_id="user/tiny")

    images = [torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8).numpy() for _ in range(2)]
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    reloaded = AutoModelForImageClassification.from_pretrained("user/tiny").eval()
    reprocessed = AutoImageProcessor.from_pretrained("user/tiny")(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        assert torch.equal(reloaded(pixel_values=pixels).logits, model(pixel_values=pixels).logits)
    assert torch.equal(reprocessed, pixels)

    pushed = local_hub.files("user/tiny")
    assert pushed["model.safetensors"] == (folder / "model.safetensors").read_bytes()
    assert local_hub.commits("user/tiny")[0].files["model.safetensors"].lfs  # weights went through git-LFS
    assert {"lfs-batch", "lfs-upload", "lfs-verify"} <= {r.route for r in local_hub.requests}
    assert (local_hub.home / "hub" / "models--user--tiny").is_dir()  # downloads land in this test's cache
    _served(local_hub)


def test_revisions_resolve_by_branch_and_commit_sha(local_hub):
    api = HfApi()
    api.create_repo("user/notes")
    first = api.upload_file(path_or_fileobj=b"v1", path_in_repo="notes/a.txt", repo_id="user/notes")
    second = api.upload_file(path_or_fileobj=b"v2", path_in_repo="notes/a.txt", repo_id="user/notes")
    assert first.oid != second.oid

    def read(revision):
        return Path(hf_hub_download("user/notes", "notes/a.txt", revision=revision)).read_bytes()

    assert read("main") == b"v2"
    assert read(second.oid) == b"v2"
    assert read(first.oid) == b"v1"  # the old commit still serves the old content
    assert api.model_info("user/notes").sha == second.oid
    assert api.model_info("user/notes", revision=first.oid).sha == first.oid
    history = [commit.oid for commit in local_hub.commits("user/notes")]
    assert history[:2] == [second.oid, first.oid]
    assert [commit.commit_id for commit in api.list_repo_commits("user/notes")] == history
    assert local_hub.files("user/notes", revision=first.oid)["notes/a.txt"] == b"v1"

    stale = [CommitOperationAdd(path_in_repo="b.txt", path_or_fileobj=b"late")]
    with pytest.raises(HfHubHTTPError) as conflict:
        api.create_commit("user/notes", operations=stale, commit_message="stale", parent_commit=first.oid)
    assert conflict.value.response.status_code == 412
    api.create_commit("user/notes", operations=stale, commit_message="fresh", parent_commit=second.oid)
    assert local_hub.files("user/notes")["b.txt"] == b"late"
    _served(local_hub)


def test_datasets_pushed_to_hub_load_back_by_repo_id(local_hub):
    rows = {"text": ["a", "b", "c"], "label": [0, 1, 2]}
    datasets.Dataset.from_dict(rows).push_to_hub("user/ds")
    assert datasets.load_dataset("user/ds", split="train").to_dict() == rows

    newer = {"text": ["d"], "label": [3]}
    datasets.Dataset.from_dict(newer).push_to_hub("user/ds")  # a second push replaces the split
    assert datasets.load_dataset("user/ds", split="train").to_dict() == newer

    splits = {"train": rows, "test": {"text": ["z"], "label": [9]}}
    datasets.DatasetDict({name: datasets.Dataset.from_dict(s) for name, s in splits.items()}).push_to_hub("user/dd")
    loaded = datasets.load_dataset("user/dd")
    assert {name: split.to_dict() for name, split in loaded.items()} == splits
    parquet = [path for path in local_hub.files("user/dd", repo_type="dataset") if path.endswith(".parquet")]
    assert len(parquet) == 2
    _served(local_hub)


def test_missing_repo_file_or_revision_raise_the_typed_errors(local_hub):
    api = HfApi()
    api.create_repo("user/exists")
    api.upload_file(path_or_fileobj=b"x", path_in_repo="a.txt", repo_id="user/exists")

    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("user/missing", "a.txt")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("user/missing")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("user/exists", "nope.txt")
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree("user/exists", path_in_repo="no/folder"))
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("user/exists", "a.txt", revision="nope")
    with pytest.raises(RevisionNotFoundError):
        api.model_info("user/exists", revision="refs/convert/parquet")
    assert any("/revision/refs%2Fconvert%2Fparquet" in r.path and r.status == 404 for r in local_hub.requests)
    with pytest.raises(RevisionNotFoundError):
        list(api.list_repo_tree("user/exists", revision="0" * 40))
    assert api.file_exists("user/exists", "a.txt") and not api.file_exists("user/exists", "nope.txt")
    assert not api.revision_exists("user/exists", "nope")
    _served(local_hub)


def test_invalid_readme_metadata_is_rejected_before_upload(local_hub):
    api = HfApi()
    api.create_repo("user/card")
    for bad in (b"---\nlicense: [mit\n---\n# Card\n", b"---\nlicense: mit\n# never closed\n", b"---\n- a list\n---\n"):
        with pytest.raises(ValueError, match="Invalid metadata in README.md"):
            api.upload_file(path_or_fileobj=bad, path_in_repo="README.md", repo_id="user/card")
    assert "README.md" not in local_hub.files("user/card")
    assert len(local_hub.commits("user/card")) == 1

    api.upload_file(path_or_fileobj=b"---\nlicense: mit\n---\n# Card\n", path_in_repo="README.md", repo_id="user/card")
    assert api.model_info("user/card").card_data.license == "mit"
    _served(local_hub)


def _non_loopback_addresses() -> set[str]:
    """This machine's addresses other than 127.0.0.1 (its outgoing interface, its host name's addresses)."""
    addresses = set(socket.gethostbyname_ex(socket.gethostname())[2])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))  # UDP connect sends nothing: it only picks the interface
            addresses.add(probe.getsockname()[0])
        except OSError:
            pass
    return addresses - {"127.0.0.1", "0.0.0.0"}


def test_server_listens_on_loopback_only(local_hub):
    host, port = local_hub.server_address
    assert host == "127.0.0.1" and local_hub.endpoint == f"http://127.0.0.1:{port}"
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    others = _non_loopback_addresses()
    if not others:
        pytest.skip("this machine has no address other than 127.0.0.1 to try")
    for address in others:
        with pytest.raises(OSError):
            socket.create_connection((address, port), timeout=2).close()


def test_no_authorization_header_is_sent_without_a_token(local_hub):
    api = HfApi()
    api.create_repo("user/anon")
    api.upload_file(path_or_fileobj=b"x" * 10, path_in_repo="w.safetensors", repo_id="user/anon")
    hf_hub_download("user/anon", "w.safetensors")
    assert local_hub.requests and all("authorization" not in r.headers for r in local_hub.requests)

    HfApi(token="hf_not_a_real_token").model_info("user/anon")  # the recording does see a token when one is sent
    assert local_hub.requests[-1].headers["authorization"] == "Bearer hf_not_a_real_token"
    _served(local_hub)


def test_tree_pagination_paths_info_and_ranged_reads(local_hub, tmp_path):
    local_hub.tree_page_size = 2
    folder = tmp_path / "repo"
    (folder / "data" / "sub").mkdir(parents=True)
    (folder / "README.md").write_text("# hi\n")
    (folder / "data" / "x.txt").write_text("x")
    (folder / "data" / "y.txt").write_text("y")
    weights = bytes(range(256)) * 4
    (folder / "data" / "sub" / "z.bin").write_bytes(weights)
    api = HfApi()
    api.create_repo("user/tree")
    commit = api.upload_folder(folder_path=folder, repo_id="user/tree")

    files = [".gitattributes", "README.md", "data/sub/z.bin", "data/x.txt", "data/y.txt"]
    assert sorted(api.list_repo_files("user/tree")) == files
    assert sum(r.route == "tree" for r in local_hub.requests) >= 3  # followed the `Link: rel="next"` pages
    assert {entry.path for entry in api.list_repo_tree("user/tree")} == {".gitattributes", "README.md", "data"}

    z, data = api.get_paths_info("user/tree", ["data/sub/z.bin", "data", "missing.txt"])
    assert isinstance(z, RepoFile) and z.size == len(weights) and z.lfs.sha256 == hashlib.sha256(weights).hexdigest()
    assert isinstance(data, RepoFolder)
    expanded = list(api.list_repo_tree("user/tree", path_in_repo="data", expand=True))
    assert {entry.last_commit.oid for entry in expanded} == {commit.oid}

    fs = HfFileSystem()
    listing = ["user/tree/data/sub", "user/tree/data/x.txt", "user/tree/data/y.txt"]
    assert sorted(fs.ls("user/tree/data", detail=False)) == listing
    with fs.open("user/tree/data/sub/z.bin", "rb", block_size=64) as handle:
        handle.seek(300)
        assert handle.read(10) == weights[300:310]
    assert any(r.status == 206 and "range" in r.headers for r in local_hub.requests)
    _served(local_hub)


def test_concurrent_pushes_and_downloads(local_hub):
    api = HfApi()
    api.create_repo("user/busy")

    def push(i):
        return api.upload_file(path_or_fileobj=f"{i}".encode(), path_in_repo=f"ckpt-{i}.txt", repo_id="user/busy")

    with ThreadPoolExecutor(8) as pool:
        commits = list(pool.map(push, range(8)))
        contents = list(pool.map(lambda i: Path(hf_hub_download("user/busy", f"ckpt-{i}.txt")).read_text(), range(8)))
    assert contents == [str(i) for i in range(8)]
    assert len({commit.oid for commit in commits}) == 8
    assert len(local_hub.commits("user/busy")) == 9
    _served(local_hub)


def test_subprocess_uses_the_server_through_env(local_hub):
    api = HfApi()
    api.create_repo("user/sub")
    api.upload_file(path_or_fileobj=b"hello", path_in_repo="a.txt", repo_id="user/sub")
    script = (
        "from pathlib import Path\n"
        "from huggingface_hub import HfApi, hf_hub_download\n"
        "text = Path(hf_hub_download('user/sub', 'a.txt')).read_text()\n"
        "HfApi().upload_file(path_or_fileobj=text.upper().encode(), path_in_repo='b.bin', repo_id='user/sub')\n"
    )
    env = {**os.environ, **local_hub.env}
    result = subprocess.run([sys.executable, "-c", script], env=env, timeout=120, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert local_hub.files("user/sub")["b.bin"] == b"HELLO"  # pushed through git-LFS: Xet stayed off
    assert (local_hub.home / "hub" / "models--user--sub").is_dir()
    _served(local_hub)


def _http(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_protocol_guards_reject_bad_uploads():
    with LocalHub(max_request_bytes=1024) as hub:
        base = hub.endpoint
        status, _, _ = _http(f"{base}/api/repos/create", "POST", json.dumps({"name": "r"}).encode())
        assert status == 200
        oid = "0" * 64
        assert _http(f"{base}/_lfs/models/user/r/{oid}", "PUT", b"not the content of that oid")[0] == 400
        assert _http(f"{base}/_lfs/models/user/r/{oid}", "PUT", b"x" * 2048)[0] == 413
        commit = b'{"key": "header", "value": {"summary": "s"}}\n'
        commit += b'{"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": "%s", "size": 3}}\n' % (
            oid.encode()
        )
        assert _http(f"{base}/api/models/user/r/commit/main", "POST", commit)[0] == 422
        status, headers, _ = _http(f"{base}/user/r/resolve/main/missing.txt", "HEAD")
        assert status == 404 and headers["X-Error-Code"] == "EntryNotFound"
        assert _http(f"{base}/api/not-a-route")[0] == 404
        assert _http(f"{base}/api/models/user/r/commit/main", "GET")[0] == 405
        assert hub.requests[-2].route is None and hub.requests[-1].route == "commit"
        assert not hub.server_errors
    with pytest.raises(OSError):
        _http(f"{base}/api/models/user/r")  # closed: the port no longer answers
