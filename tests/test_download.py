"""Dataset download against a local HTTP server on 127.0.0.1: resume, retry, verification, atomic placement."""

from __future__ import annotations

import io
import os
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from audiosweep.config import merge
from audiosweep.data import ensure_dataset
from audiosweep.download import DownloadError, download_dataset, fetch
from tests.conftest import REPO, TINY_SWEEP_RUN, read_records, run_sweep_cli, write_sweep


def build_zip(synth_root, n_clips=3) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.write(synth_root / "meta" / "esc50.csv", "ESC-50-master/meta/esc50.csv")
        for p in sorted((synth_root / "audio").iterdir())[:n_clips]:
            z.write(p, f"ESC-50-master/audio/{p.name}")
        z.writestr("ESC-50-master/README.md", "ESC-50")
    return buf.getvalue()


class Server:
    """Serves ``payload`` at any path, or each of a dict's payloads at its path (others: 404); the first ``cut``
    responses stop after half the bytes; Range honoured unless told."""

    def __init__(self, payload: bytes | dict[str, bytes], cut: int = 0, honour_range: bool = True,
                 status: int = 200):
        self.payload, self.cut, self.honour_range, self.status = payload, cut, honour_range, status
        self.requests: list[str | None] = []
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                rng = self.headers.get("Range")
                outer.requests.append(rng)
                outer.paths.append(self.path)
                payload = outer.payload.get(self.path) if isinstance(outer.payload, dict) else outer.payload
                if outer.status != 200 or payload is None:
                    self.send_error(outer.status if outer.status != 200 else 404)
                    return
                start = int(rng.split("=")[1].split("-")[0]) if rng and outer.honour_range else 0
                body = payload[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.cut > 0:
                    outer.cut -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.close()
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.url = self.base + "/master.zip"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def payload(synth_root):
    return build_zip(synth_root)


def test_download_and_extract(tmp_path, payload):
    srv = Server(payload)
    try:
        dest = download_dataset(srv.url, tmp_path / "ESC-50", marker="meta/esc50.csv")
    finally:
        srv.close()
    assert (dest / "meta" / "esc50.csv").is_file() and len(list((dest / "audio").iterdir())) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ESC-50"]  # no archive, partial or temp folder left


def test_interrupted_transfer_resumes_with_range(tmp_path, payload):
    srv = Server(payload, cut=2)
    try:
        out = fetch(srv.url, tmp_path / "a.zip", backoff=0)
    finally:
        srv.close()
    assert out.read_bytes() == payload
    assert srv.requests[0] is None and all(r and r.startswith("bytes=") for r in srv.requests[1:])
    assert len(srv.requests) == 3


def test_server_ignoring_range_restarts_cleanly(tmp_path, payload):
    srv = Server(payload, cut=1, honour_range=False)
    try:
        out = fetch(srv.url, tmp_path / "a.zip", backoff=0)
    finally:
        srv.close()
    assert out.read_bytes() == payload


def test_give_up_keeps_partial_then_resume(tmp_path, payload):
    srv = Server(payload, cut=10)
    try:
        with pytest.raises(DownloadError, match="after 2 attempts: .* bytes received are kept in .*a.zip.partial"):
            fetch(srv.url, tmp_path / "a.zip", retries=2, backoff=0)
        assert not (tmp_path / "a.zip").exists() and (tmp_path / "a.zip.partial").stat().st_size > 0
        srv.cut = 0
        assert fetch(srv.url, tmp_path / "a.zip", backoff=0).read_bytes() == payload
    finally:
        srv.close()


def test_http_error_and_corrupt_archive(tmp_path, payload):
    srv = Server(payload, status=404)
    try:
        with pytest.raises(DownloadError, match="HTTP 404"):
            download_dataset(srv.url, tmp_path / "ESC-50", marker="meta/esc50.csv")
    finally:
        srv.close()
    srv = Server(payload[:-200] + b"\0" * 200)
    try:
        with pytest.raises(DownloadError, match="not a valid zip|corrupt"):
            download_dataset(srv.url, tmp_path / "ESC-50", marker="meta/esc50.csv")
    finally:
        srv.close()
    assert not (tmp_path / "ESC-50").exists() and not list(tmp_path.glob(".*"))


def test_ensure_dataset_downloads_when_missing(tmp_path, payload, synth_root):
    srv = Server(payload)
    try:
        cfg = merge([{"data_dir": str(tmp_path / "data" / "ESC-50"), "download_url": srv.url, "download": True}])
        root = ensure_dataset(cfg)
        assert (root / "meta" / "esc50.csv").read_bytes() == (synth_root / "meta" / "esc50.csv").read_bytes()
        assert ensure_dataset(cfg) == root and len(srv.requests) == 1  # present: no second download
    finally:
        srv.close()


def test_non_dataset_folder_is_not_overwritten(tmp_path):
    (tmp_path / "ESC-50").mkdir()
    (tmp_path / "ESC-50" / "notes.txt").write_text("mine")
    with pytest.raises(DownloadError, match="exists but has no meta/esc50.csv"):
        download_dataset("http://127.0.0.1:9/none.zip", tmp_path / "ESC-50", marker="meta/esc50.csv")
    assert (tmp_path / "ESC-50" / "notes.txt").read_text() == "mine"


def test_nothing_received_is_not_called_partial_data(tmp_path):
    with pytest.raises(DownloadError, match="Nothing was received") as e:
        fetch("http://127.0.0.1:9/esc50.zip", tmp_path / "a.zip", retries=1, timeout=5)
    assert "kept" not in str(e.value)


def crafted_zip(synth_root, members: dict[str, bytes], link: str | None = None) -> bytes:
    """Hostile ``members`` (and a symbolic link member named ``link``) first, then a real dataset archive."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z, zipfile.ZipFile(io.BytesIO(build_zip(synth_root, n_clips=1))) as real:
        for name, body in members.items():
            z.writestr(name, body)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = 0o120777 << 16
            z.writestr(info, "/etc")
        for info in real.infolist():
            z.writestr(info, real.read(info))
    return buf.getvalue()


@pytest.mark.parametrize("members, link", [
    ({"x/../../victim/meta/esc50.csv": b"filename\n"}, None),  # the root would resolve outside the temp folder
    ({"/abs/meta/esc50.csv": b"filename\n"}, None),
    ({}, "ESC-50-master/audio/escape"),
])
def test_archives_reaching_outside_are_refused_and_touch_nothing(tmp_path, synth_root, members, link):
    victim = tmp_path / "data" / "victim" / "meta"  # where x/../../victim lands from data/.ESC-50-tmp/
    victim.mkdir(parents=True)
    (victim / "esc50.csv").write_text("mine")
    srv = Server(crafted_zip(synth_root, members, link))
    try:
        with pytest.raises(DownloadError, match="refusing to unpack 1 member"):
            download_dataset(srv.url, tmp_path / "data" / "ESC-50", marker="meta/esc50.csv")
    finally:
        srv.close()
    assert (victim / "esc50.csv").read_text() == "mine" and not (tmp_path / "data" / "ESC-50").exists()


def build_tar(synth_root, hostile: list[tarfile.TarInfo]) -> bytes:
    """A .tar.gz of ``hostile`` members first, then a real ESC-50 tree under ESC-50-master/."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for info in hostile:
            t.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
        t.add(synth_root / "meta" / "esc50.csv", "ESC-50-master/meta/esc50.csv")
        p = sorted((synth_root / "audio").iterdir())[0]
        t.add(p, f"ESC-50-master/audio/{p.name}")
    return buf.getvalue()


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, target, 1 if kind == tarfile.REGTYPE else 0
    return info


def test_tar_archive_is_unpacked_like_a_zip(tmp_path, synth_root):
    srv = Server(build_tar(synth_root, []))
    try:
        dest = download_dataset(srv.url.replace(".zip", ".tar.gz"), tmp_path / "ESC-50", marker="meta/esc50.csv")
    finally:
        srv.close()
    assert (dest / "meta" / "esc50.csv").read_bytes() == (synth_root / "meta" / "esc50.csv").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ESC-50"] and len(list((dest / "audio").iterdir())) == 1


@pytest.mark.parametrize("hostile", [
    tar_member("x/../../victim/meta/esc50.csv"),
    tar_member("/abs/meta/esc50.csv"),
    tar_member("ESC-50-master/audio/escape", tarfile.SYMTYPE, "/etc"),
    tar_member("ESC-50-master/audio/hard", tarfile.LNKTYPE, "../../victim/meta/esc50.csv"),
    tar_member("ESC-50-master/audio/dev", tarfile.CHRTYPE),
])
def test_tar_members_reaching_outside_are_refused_and_touch_nothing(tmp_path, synth_root, hostile):
    victim = tmp_path / "data" / "victim" / "meta"
    victim.mkdir(parents=True)
    (victim / "esc50.csv").write_text("mine")
    srv = Server(build_tar(synth_root, [hostile]))
    try:
        with pytest.raises(DownloadError, match="refusing to unpack 1 member"):
            download_dataset(srv.url, tmp_path / "data" / "ESC-50", marker="meta/esc50.csv")
    finally:
        srv.close()
    assert (victim / "esc50.csv").read_text() == "mine" and sorted(p.name for p in (tmp_path / "data").iterdir()) \
        == ["victim"]


def test_truncated_tar_is_refused_and_not_resumed(tmp_path, synth_root):
    srv = Server(build_tar(synth_root, [])[:-300])
    try:
        with pytest.raises(DownloadError, match="not a valid zip or tar archive"):
            download_dataset(srv.url, tmp_path / "ESC-50", marker="meta/esc50.csv")
    finally:
        srv.close()
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("listing", ["zenodo", "huggingface"])
def test_archives_are_checked_against_the_checksums_their_host_publishes(tmp_path, payload, listing):
    import hashlib
    import json

    from audiosweep.download import published_checksums

    def record(digest: str) -> bytes:
        if listing == "zenodo":  # /api/records/<id>: its files with "md5:<hex>"
            return json.dumps({"id": 1, "files": [{"key": "master.zip", "checksum": f"md5:{digest}", "size": 1},
                                                  {"key": "other.zip", "checksum": "md5:00"}]}).encode()
        return json.dumps([{"type": "file", "path": "data/master.zip", "lfs": {"oid": digest, "size": 1}}]).encode()

    algorithm = "md5" if listing == "zenodo" else "sha256"
    good = hashlib.new(algorithm, payload).hexdigest()
    srv = Server({"/master.zip": payload, "/good.json": record(good), "/bad.json": record("0" * len(good))})
    try:
        assert published_checksums(srv.base + "/good.json")["master.zip"] == (algorithm, good)
        download_dataset(srv.url, tmp_path / "ok", marker="meta/esc50.csv",
                         checksums=published_checksums(srv.base + "/good.json"))
        assert (tmp_path / "ok" / "meta" / "esc50.csv").is_file()
        with pytest.raises(DownloadError, match=f"master.zip: {algorithm} {good} differs from the published 0+: "
                                                "the download is corrupt"):
            download_dataset(srv.url, tmp_path / "bad", marker="meta/esc50.csv",
                             checksums=published_checksums(srv.base + "/bad.json"))
        assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad*"))  # nothing kept, nothing unpacked
    finally:
        srv.close()


def test_unreachable_checksums_warn_and_the_archive_is_still_checked_as_an_archive(tmp_path, monkeypatch):
    import dataclasses

    from audiosweep import data
    from audiosweep.datasets import DATASETS

    srv = Server({})  # every path 404
    try:
        entry = dataclasses.replace(DATASETS["urbansound8k"], checksums_url=srv.base + "/api/records/1")
        with pytest.warns(UserWarning, match="cannot read the published checksums at .*/api/records/1 .*HTTP Error "
                                             "404.*checked as archives only"):
            assert data._checksums(entry) == {}
    finally:
        srv.close()


def test_an_unreachable_host_fails_at_once_and_says_what_to_check(tmp_path):
    with pytest.raises(DownloadError, match=r"after 1 attempt: .*Connection refused.*Check the network"):
        fetch("http://127.0.0.1:9/esc50.zip", tmp_path / "a.zip", retries=5, backoff=60)  # no 60 s wait


def test_a_run_waits_for_the_download_another_holds_and_then_finds_the_dataset(tmp_path, payload, monkeypatch):
    """The lock beside data_dir is held (another run downloading): ensure_dataset says it waits, and once the other
    one has brought the dataset it downloads nothing."""
    from audiosweep import data
    from audiosweep.locks import exclusive

    srv = Server(payload)
    cfg = merge([{"data_dir": str(tmp_path / "ESC-50"), "download_url": srv.url, "download": True}])
    printed = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: printed.append(" ".join(map(str, a))))
    try:
        with exclusive(tmp_path / ".ESC-50.download.lock"):
            waiter = threading.Thread(target=data.ensure_dataset, args=(cfg,))
            waiter.start()
            deadline = time.time() + 30
            while not printed and time.time() < deadline:
                time.sleep(0.05)
            download_dataset(srv.url, tmp_path / "ESC-50", marker="meta/esc50.csv")  # "the other run"
        waiter.join(30)
    finally:
        srv.close()
    assert "another process is downloading it into" in printed[0] and len(srv.requests) == 1


@pytest.mark.slow
def test_a_two_worker_sweep_on_an_empty_data_dir_downloads_once(tmp_path, synth_root):
    """Before the lock: both runs downloaded into one folder and one failed with 'Directory not empty'."""
    srv = Server(build_zip(synth_root, n_clips=40))  # fold 1: 4 clips of each ESC-10 class
    try:
        path = write_sweep(tmp_path / "fresh.yaml", {**TINY_SWEEP_RUN, "split": "stratified", "valid_pct": 0.25,
                                                     "data_dir": str(tmp_path / "data" / "ESC-50"),
                                                     "download_url": srv.url, "download": True,
                                                     "cache_dir": str(tmp_path / "cache"),
                                                     "trial_num": {"values": [1, 2]}})
        out = run_sweep_cli("run", str(path), "--workers", "2", "--results-dir", str(tmp_path / "res"),
                            "--wandb-mode", "disabled", env={**os.environ, "PYTHONPATH": str(REPO)})
    finally:
        srv.close()
    assert out.returncode == 0, out.stdout + out.stderr
    assert srv.paths == ["/master.zip"]  # one GET of the archive
    assert [r["status"] for r in read_records(tmp_path / "res" / "fresh")] == ["finished", "finished"]
