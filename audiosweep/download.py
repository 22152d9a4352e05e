"""Download and unpack a dataset archive, or several into one folder: progress bar, retry with resume,
verification, atomic placement."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import lzma
import os
import shutil
import socket
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.std import tqdm  # not tqdm.auto: it warns in Jupyter without ipywidgets

from .errors import UserError


class DownloadError(UserError):
    """The archive could not be fetched or is not a valid dataset archive."""


def fetch(url: str, dest: Path, retries: int = 5, timeout: float = 60.0, backoff: float = 1.0) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.partial`` with HTTP Range requests.

    ``dest`` only appears once the transfer is complete (and as long as the server announced).
    """
    part = dest.with_name(dest.name + ".partial")
    dest.parent.mkdir(parents=True, exist_ok=True)
    last_error: Exception | None = None
    for attempt in range(1, retries + 1):
        have = part.stat().st_size if part.exists() else 0
        req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                if have and resp.status != 206:  # server ignored the range: start over
                    have = 0
                length = resp.headers.get("Content-Length")
                total = have + int(length) if length is not None else None
                with open(part, "ab" if have else "wb") as f, tqdm(
                        total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                        desc=f"downloading {dest.name}", disable=None) as bar:
                    while chunk := resp.read(1 << 20):
                        f.write(chunk)
                        bar.update(len(chunk))
            size = part.stat().st_size
            if total is not None and size != total:
                raise DownloadError(f"transfer ended at {size} of {total} bytes")
            os.replace(part, dest)
            return dest
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # range past the end: the partial file is bad, start over
                part.unlink()
            elif 400 <= e.code < 500:
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
            last_error = e
        except (OSError, http.client.HTTPException, DownloadError) as e:
            last_error = e
            if unreachable(e):  # offline, or no such host: retrying in seconds changes nothing
                break
        if attempt < retries:
            print(f"download interrupted ({last_error}); retrying ({attempt}/{retries - 1}) ...")
            time.sleep(backoff * attempt)
    kept = (f"The {part.stat().st_size} bytes received are kept in {part} and resumed next time."
            if part.is_file() and part.stat().st_size else "Nothing was received.")
    fix = " Check the network (offline?) and download_url." if unreachable(
        last_error) else ""
    raise DownloadError(f"could not download {url} after {attempt} attempt{'s' * (attempt > 1)}: {last_error}. "
                        f"{kept}{fix}")


def unreachable(error: Exception | None) -> bool:
    """Whether ``error`` says the host cannot be reached at all: its name does not resolve, or it refuses the
    connection."""
    return isinstance(error, urllib.error.URLError) and isinstance(error.reason, (socket.gaierror,
                                                                                  ConnectionRefusedError))


def extract_dataset(archive: Path, dest: Path, marker: str | None) -> Path:
    """Verify ``archive`` (zip or tar, compressed or not) and unpack the folder holding ``marker`` to ``dest``:
    a file (``meta/esc50.csv``) or a folder ending in ``/`` (``genres/``). With ``marker`` None, the archive is
    one part of a dataset: its top folder (when all its members share one) is merged into ``dest``.

    Every member is checked before anything is written, and the archive is unpacked into a temporary folder
    beside ``dest`` that is renamed into place, so a half-finished extraction never looks like a complete dataset
    (a merged part is moved in file by file: :func:`download_archives` records it once all are there).
    """
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                bad = z.testzip()
                if bad is not None:
                    raise DownloadError(f"{archive}: corrupt member {bad} (CRC mismatch)")
                unsafe = [i.filename for i in z.infolist() if unsafe_member(i)]
                root = _checked_root(archive, unsafe, z.namelist(), marker)
                members = [n for n in z.namelist() if n.startswith(root)]
                return _unpack(archive, dest, root, members, z.extract, merge=marker is None)
        with tarfile.open(archive) as t:
            infos = t.getmembers()  # reads the whole archive: a truncated or corrupt one fails here
            unsafe = [i.name for i in infos if unsafe_tar_member(i)]
            root = _checked_root(archive, unsafe, [_plain(i.name) + "/" * i.isdir() for i in infos], marker)
            members = [i for i in infos if _plain(i.name).startswith(root)]
            # filter="data" re-checks each member as it is written (tarfile's own rules for untrusted archives)
            return _unpack(archive, dest, root, members, lambda m, to: t.extract(m, to, filter="data"),
                           merge=marker is None)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as e:
        raise DownloadError(f"{archive}: not a valid zip or tar archive ({e})") from e


def _plain(name: str) -> str:
    """A tar member's name without the ``./`` that some archivers put first."""
    while name.startswith("./"):
        name = name[2:]
    return name


def _checked_root(archive: Path, unsafe: list[str], names: list[str], marker: str | None) -> str:
    """The folder (``""`` or ending in ``/``) of the shallowest ``marker`` among ``names`` (no marker: the top
    folder all names share, if any), once no member is ``unsafe``."""
    if unsafe:
        raise DownloadError(f"{archive}: refusing to unpack {len(unsafe)} member(s) that would land outside "
                            f"the dataset folder or are links (first: {unsafe[0]!r}); is it the right archive?")
    if marker is None:
        top = names[0].split("/")[0] + "/" if names else ""
        return top if all(n.startswith(top) for n in names) else ""
    roots = []
    for name in names:
        path = "/" + name
        at = path.find("/" + marker)
        # a file marker ends the name; a folder marker (ending in /) may be followed by its contents
        if at >= 0 and (marker.endswith("/") or path[at + 1:] == marker):
            roots.append(path[1:at + 1])
    if not roots:
        raise DownloadError(f"{archive}: no {marker} inside; is it the right archive?")
    return min(roots, key=len)


def _unpack(archive: Path, dest: Path, root: str, members: list, extract: Callable[[Any, Path], Any],
            merge: bool) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        for member in tqdm(members, desc="extracting", unit="file", disable=None):
            extract(member, tmp)
        top = (tmp / root).resolve()
        if not top.is_relative_to(tmp.resolve()):  # checked above; never move what is not ours
            raise DownloadError(f"{archive}: {root!r} is outside the extraction folder")
        if merge:
            for path in sorted(p for p in top.rglob("*") if p.is_file()):
                target = dest / path.relative_to(top)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
        else:
            os.replace(top, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def unsafe_member(info: zipfile.ZipInfo) -> bool:
    """A member with an absolute path, a drive, a ``..`` component or a symbolic link (which could point
    anywhere): none belongs in a dataset archive."""
    name = info.filename.replace("\\", "/")
    is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
    return is_link or _unsafe_name(name)


def unsafe_tar_member(info: tarfile.TarInfo) -> bool:
    """As :func:`unsafe_member`, for a tar member: links (symbolic or hard) and devices are refused too."""
    return not (info.isfile() or info.isdir()) or _unsafe_name(info.name.replace("\\", "/"))


def _unsafe_name(name: str) -> bool:
    return name.startswith("/") or ":" in name.split("/")[0] or ".." in name.split("/")


def archive_suffix(url: str) -> str:
    """The archive's suffix as ``url`` names it (``.zip`` when it names none): only the downloaded file's name."""
    path = urllib.parse.urlsplit(url).path
    return next((s for s in (".tar.gz", ".tgz", ".tar") if path.endswith(s)), ".zip")


def _refuse_foreign(dest: Path, marker: str) -> None:
    if dest.exists() and any(dest.iterdir()):
        raise DownloadError(f"{dest} exists but has no {marker}: point data_dir at the dataset root, "
                            "or at an empty or missing folder to download into")


# archive name -> (hash algorithm, expected hex digest), as the dataset's host publishes them
Checksums = dict[str, tuple[str, str]]


def published_checksums(url: str, timeout: float = 30.0) -> Checksums:
    """The archives' checksums that the JSON at ``url`` publishes: a Zenodo record (``/api/records/<id>``:
    files with ``key`` and ``checksum: "md5:..."``) or a Hugging Face tree listing (``path`` and ``lfs.oid``, a
    sha256). Written here because neither host has a client in our dependencies that returns them."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        listing = json.load(resp)
    found: Checksums = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("key"), str) and str(node.get("checksum", "")).count(":") == 1:
                algorithm, digest = node["checksum"].split(":")
                found[node["key"]] = (algorithm, digest)
            elif isinstance(node.get("path"), str) and isinstance(node.get("lfs"), dict) and node["lfs"].get("oid"):
                found[node["path"].rsplit("/", 1)[-1]] = ("sha256", node["lfs"]["oid"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(listing)
    return found


def verify(archive: Path, name: str, checksums: Checksums) -> None:
    """Raise a DownloadError when ``archive`` (published as ``name``) does not have its published checksum."""
    if name not in checksums:
        return
    algorithm, expected = checksums[name]
    h = hashlib.new(algorithm)
    with open(archive, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    if h.hexdigest() != expected.lower():
        raise DownloadError(f"{name}: {algorithm} {h.hexdigest()} differs from the published {expected}: the "
                            "download is corrupt or the file changed; run again to download it afresh")


def _fetch_and_extract(url: str, archive: Path, dest: Path, marker: str | None,
                       checksums: Checksums | None = None) -> None:
    """Fetch ``url`` to ``archive``, check its published checksum and unpack it (:func:`extract_dataset`); the
    archive is deleted once unpacked, or when it fails either check."""
    fetch(url, archive)
    try:
        verify(archive, archive_name(url), checksums or {})
        extract_dataset(archive, dest, marker)
    except DownloadError:
        archive.unlink()  # a corrupt archive must not be resumed next time
        raise
    archive.unlink()


def download_dataset(url: str, dest: Path, marker: str, checksums: Checksums | None = None) -> Path:
    """Fetch the archive at ``url``, check it against ``checksums`` (when they list it) and unpack it as ``dest``."""
    dest = Path(dest)
    _refuse_foreign(dest, marker)
    if dest.exists():
        dest.rmdir()
    _fetch_and_extract(url, dest.parent / f".{dest.name}{archive_suffix(url)}", dest, marker, checksums)
    return dest


PROGRESS = ".download-incomplete"  # in a folder filled from several archives: the names of those unpacked so far


def archive_name(url: str) -> str:
    return urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]


def incomplete(dest: Path) -> bool:
    """Whether ``dest`` is a download of several archives that has not finished (:func:`download_archives`)."""
    return (Path(dest) / PROGRESS).exists()


def mirrored(urls: tuple[str, ...], base: str | None) -> list[str]:
    """``urls``, or with ``base`` the same archive names under that folder URL (a mirror)."""
    return [base.rstrip("/") + "/" + archive_name(u) for u in urls] if base else list(urls)


def download_archives(urls: list[str], dest: Path, marker: str, checksums: Checksums | None = None) -> Path:
    """Fetch each archive at ``urls`` and merge it into ``dest`` (its top folder stripped); ``dest`` must then
    hold ``marker``.

    Until every archive is unpacked, ``dest/.download-incomplete`` lists those that are: a later call (the
    dataset's marker may already be there) skips them and finishes the rest, each fetch resuming its partial file.
    """
    dest, names = Path(dest), [archive_name(u) for u in urls]
    progress = dest / PROGRESS
    if not progress.exists():
        _refuse_foreign(dest, marker)
        dest.mkdir(parents=True, exist_ok=True)
        progress.touch()
    done = set(progress.read_text().split())
    for url, name in zip(urls, names):
        if name in done:
            continue
        print(f"archive {names.index(name) + 1} of {len(names)}: {url}")
        _fetch_and_extract(url, dest.parent / f".{dest.name}-{name}", dest, None, checksums)
        with open(progress, "a") as f:
            f.write(name + "\n")
    if not (dest / marker).exists():
        raise DownloadError(f"the {len(urls)} archives unpacked into {dest} hold no {marker}: are they the "
                            f"dataset's archives ({', '.join(names)})? Delete {dest} to start over")
    progress.unlink()
    return dest
