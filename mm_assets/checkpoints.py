"""Checkpoint directories: what makes one complete, and how to verify it (no Dagster here).

A checkpoint is a directory (local or under an `s3://` prefix) holding HF `save_pretrained`
files (safetensors weights, config, tokenizer, processor), a `manifest.json` — training run,
recipe, curated dataset versions, step, epoch, parent, and the sha256 of every file — and a
`COMPLETE` marker written last. A directory without the marker, or whose files do not match
the manifest's hashes, is not a checkpoint yet (a trainer may still be writing it) and is
never registered or evaluated. Trainers outside this project write the same three things.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mm_assets.storage import Storage

MANIFEST = "manifest.json"
MARKER = "COMPLETE"


class IncompleteCheckpoint(ValueError):
    pass


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def seal_local_checkpoint(directory: str | Path, manifest: dict) -> dict:
    """Hash every file of a local checkpoint directory, write the manifest, then the marker."""
    d = Path(directory)
    files = {p.relative_to(d).as_posix(): _sha256_file(p) for p in sorted(d.rglob("*"))
             if p.is_file() and p.name not in (MANIFEST, MARKER)}
    manifest = dict(manifest, files=files)
    # both through Storage's temporary-file-then-rename: a writer killed mid-write must not leave
    # an empty marker, which `list_complete` and resume would take for a sealed checkpoint
    raw = json.dumps(manifest, indent=2, sort_keys=True).encode()
    st = Storage(str(d))
    st.write_bytes(MANIFEST, raw)
    st.write_bytes(MARKER, hashlib.sha256(raw).hexdigest().encode())
    return manifest


def upload_sealed(directory: str | Path, st: Storage) -> None:
    """Copy a sealed local checkpoint directory into `st`, the completion marker last, so a
    reader never sees a marker without every file."""
    d = Path(directory)
    for p in sorted(p for p in d.rglob("*") if p.is_file() and p.name != MARKER):
        st.put_local_file(str(p), p.relative_to(d).as_posix())
    st.put_local_file(str(d / MARKER), MARKER)


def checkpoint_version(manifest: dict) -> str:
    """The content identity of a checkpoint: the hash of its files' hashes."""
    return hashlib.sha256(json.dumps(manifest["files"], sort_keys=True).encode()).hexdigest()[:20]


def verify_checkpoint(st: Storage, name: str, check_hashes: bool = True) -> dict:
    """The manifest of a complete checkpoint; raises IncompleteCheckpoint naming what is wrong."""
    ck = st.child(name)
    if not ck.exists(MARKER):
        raise IncompleteCheckpoint(f"{ck.uri('')}: no {MARKER} marker (still being written?)")
    if not ck.exists(MANIFEST):
        raise IncompleteCheckpoint(f"{ck.uri('')}: {MARKER} without {MANIFEST}")
    raw = ck.read_bytes(MANIFEST)
    if ck.read_bytes(MARKER).decode().strip() != hashlib.sha256(raw).hexdigest():
        raise IncompleteCheckpoint(f"{ck.uri('')}: the marker does not match the manifest (rewritten after sealing?)")
    manifest = json.loads(raw)
    if check_hashes:
        for rel, want in manifest["files"].items():
            if not ck.exists(rel):
                raise IncompleteCheckpoint(f"{ck.uri(rel)}: listed in the manifest, missing")
            h = hashlib.sha256()
            with ck.open_read(rel) as f:
                while chunk := f.read(8 << 20):
                    h.update(chunk)
            if h.hexdigest() != want:
                raise IncompleteCheckpoint(f"{ck.uri(rel)}: sha256 {h.hexdigest()[:16]} ≠ manifest {want[:16]}")
    return manifest


def list_complete(st: Storage) -> list[str]:
    """Names of the checkpoint directories that carry a marker (cheap: no hashing)."""
    return [name for name in st.list("") if st.exists(f"{name}/{MARKER}")]
