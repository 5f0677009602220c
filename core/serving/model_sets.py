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
deleted.

Writers of a folder take turns (``core.serving.writer_lock``): an export holds the folder's lock
from its staging folder's creation to the switch (``new_set``), so its clean-up never meets a
staging folder whose writer is still at work, and a change of the manifest (``update_manifest``)
holds it too. ``served_set`` says which set a folder serves (its version and the sha256 of each
model file), so that what was measured on one set is never written into another's manifest.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from core.serving.files import fsync_file, fsync_folder, remove_temporaries, write_json_atomic
from core.serving.models import PolicyLoadError, load_manifest, sha256
from core.serving.writer_lock import writer_lock

MANIFEST = "manifest.json"
VERSION = re.compile(r"\d{8}T\d{12}Z-[0-9a-f]{8}")  # UTC time to the microsecond, content hash
STAGING = ".staging-"


class ModelSetChanged(PolicyLoadError):
    """The folder no longer serves the model set that a change was meant for."""


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


def _holding(folder: Path, version: str | None) -> Path:
    return Path(folder) / version if version else Path(folder)


def served_folder(folder: Path) -> Path:
    """The folder holding the set that ``folder`` serves now: its current version folder, or ``folder`` itself
    (the first layout). A version folder never changes, so loading from it gives one set throughout."""
    return _holding(folder, current_version(folder))


def set_files(folder: Path) -> list[Path]:
    """The served set's ONNX files and the manifest that names them without a folder: what to
    download or copy elsewhere (the files of a version folder, or those directly in ``folder``)."""
    served = served_folder(folder)
    return sorted(served.glob("*.onnx")) + [served / MANIFEST]


def served_set(folder: Path) -> tuple[Path, dict | None]:
    """``served_folder(folder)`` and which set it holds: ``{"version": the version folder (None: the first
    layout), "files": the sha256 of each of its ONNX files}`` (None where there is no manifest)."""
    version = current_version(folder)  # read once: an export may switch sets meanwhile
    served = _holding(folder, version)
    if not (served / MANIFEST).is_file():
        return served, None
    return served, {"version": version, "files": {path.name: sha256(path) for path in sorted(served.glob("*.onnx"))}}


def _described(model_set: dict | None) -> str:
    if model_set is None:
        return "no model set"
    files = ", ".join(f"{name} {digest[:12]}" for name, digest in model_set["files"].items())
    return f"version {model_set['version'] or '(files directly in the folder)'} ({files or 'no ONNX file'})"


def _check_serves(folder: Path, expected: dict | None) -> None:
    """Raise ``ModelSetChanged`` unless ``folder`` still serves ``expected`` (``served_set``'s description)."""
    now = served_set(folder)[1]
    if expected is None or now != expected:
        raise ModelSetChanged(f"{folder}: now serves {_described(now)}, not the set measured ({_described(expected)}); "
                              "its manifest was left as it was: evaluate the set it serves to record figures in it")


def _stage(out: Path) -> Path:
    """A new private staging folder in ``out``, after deleting what interrupted exports left (only while holding
    ``out``'s writer lock: another writer's staging folder would look the same)."""
    remove_temporaries(out)
    for stale in out.glob(STAGING + "*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(dir=out, prefix=STAGING))
    staging.chmod(0o755)  # mkdtemp's 0o700 would hide the set from other readers
    return staging


@contextlib.contextmanager
def new_set(out: Path, command: str = "") -> Iterator[Path]:
    """A private staging folder in ``out`` for ``publish``, built while holding ``out``'s writer lock (naming
    ``command``; ``writer_lock.FolderBusy`` if another writer keeps it). Removed afterwards: after ``publish`` it
    is the new version folder, after a failure a half-built set."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with writer_lock(out, command):
        staging = _stage(out)
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)


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
    """Make the model files in ``staging`` (from ``new_set(out)``, inside its block; ``manifest`` names
    them without a folder) the set that ``out/manifest.json`` serves; returns that manifest."""
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


def update_manifest(out: Path, change: Callable[[dict], None], serving: dict | None, command: str = "") -> None:
    """Apply ``change`` to the served manifest and to its version's own copy, each rewritten
    atomically (the copy first: a reader of ``out`` sees the change only once both hold it), while
    holding ``out``'s writer lock; refused (``ModelSetChanged``, nothing written) unless ``out`` still
    serves ``serving`` (``served_set``'s description)."""
    with writer_lock(out, command):
        _check_serves(out, serving)
        version = current_version(out)
        for folder in ([Path(out) / version] if version else []) + [Path(out)]:
            manifest = load_manifest(folder)
            change(manifest)
            write_json_atomic(folder / MANIFEST, manifest)
