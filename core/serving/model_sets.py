"""Model sets in an export folder, replaced atomically as a whole.

An export builds the new set in a private staging folder (``OUT/.staging-*``), fsyncs every file,
writes the set's own ``manifest.json`` (files named relative to the set), and renames the folder
to its version, ``OUT/<UTC time>-<content hash>/``: a folder with a version name is always
complete. One atomic ``os.replace`` of ``OUT/manifest.json`` (the same manifest, files named
relative to ``OUT``: ``<version>/store_policy.onnx``) then switches readers from the old set to
the new one. Afterwards the previous version is kept (a rollback: ``--models OUT/<version>``
serves it as it is) and older ones are deleted. What an interrupted export leaves (temporary
files, staging folders, a version folder it never switched to) is deleted by the next export.
A folder of the first layout (model files directly in ``OUT``) keeps loading and is never
deleted. One export at a time per folder.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from core.serving.files import fsync_file, fsync_folder, remove_temporaries, write_json_atomic
from core.serving.models import PolicyLoadError, load_manifest

MANIFEST = "manifest.json"
VERSION = re.compile(r"\d{8}T\d{12}Z-[0-9a-f]{8}")  # UTC time to the microsecond, content hash
STAGING = ".staging-"


def current_version(folder: Path) -> str | None:
    """The version folder that ``folder/manifest.json`` serves; None for files directly in
    ``folder`` (the first layout, or a version folder itself) or an unreadable manifest."""
    folder = Path(folder)
    try:
        version = load_manifest(folder).get("version")
    except PolicyLoadError:
        return None
    if isinstance(version, str) and VERSION.fullmatch(version) and (folder / version).is_dir():
        return version
    return None


def set_files(folder: Path) -> list[Path]:
    """The served set's ONNX files and the manifest that names them without a folder: what to
    download or copy elsewhere (the files of a version folder, or those directly in ``folder``)."""
    version = current_version(folder)
    served = Path(folder) / version if version else Path(folder)
    return sorted(served.glob("*.onnx")) + [served / MANIFEST]


def stage(out: Path) -> Path:
    """A new private staging folder in ``out``, after deleting what interrupted exports left."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_temporaries(out)
    for stale in out.glob(STAGING + "*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(dir=out, prefix=STAGING))
    staging.chmod(0o755)  # mkdtemp's 0o700 would hide the set from other readers
    return staging


def _content_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:8]


def _relative_to_out(manifest: dict, version: str) -> dict:
    served = copy.deepcopy(manifest)
    for card in [*served["roles"].values(), served.get("hierarchy") or {}]:
        if "file" in card:
            card["file"] = f"{version}/{card['file']}"
    return served


def publish(out: Path, staging: Path, manifest: dict) -> dict:
    """Make the model files in ``staging`` (from ``stage(out)``; ``manifest`` names them without
    a folder) the set that ``out/manifest.json`` serves; returns that manifest."""
    out, staging = Path(out), Path(staging)
    for path in staging.iterdir():
        fsync_file(path)
    version = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%fZ}-{_content_hash(staging)}"
    own = {**manifest, "version": version}
    write_json_atomic(staging / MANIFEST, own)
    previous = current_version(out)
    served = _relative_to_out(own, version)
    os.rename(staging, out / version)
    try:
        fsync_folder(out)
        write_json_atomic(out / MANIFEST, served)
    except BaseException:
        if current_version(out) != version:  # not switched: the new set is not needed
            shutil.rmtree(out / version, ignore_errors=True)
        raise
    for path in out.iterdir():
        if path.is_dir() and VERSION.fullmatch(path.name) and path.name not in {version, previous}:
            shutil.rmtree(path, ignore_errors=True)  # what is left is retried by the next export
    return served


def update_manifest(out: Path, change: Callable[[dict], None]) -> None:
    """Apply ``change`` to the served manifest and to its version's own copy, each rewritten
    atomically (the copy first: a reader of ``out`` sees the change only once both hold it)."""
    version = current_version(out)
    for folder in ([Path(out) / version] if version else []) + [Path(out)]:
        manifest = load_manifest(folder)
        change(manifest)
        write_json_atomic(folder / MANIFEST, manifest)
