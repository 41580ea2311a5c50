"""The `raw_shards[domain]` step: one domain's records into validated WebDataset shards.

Shard `i` holds the domain's valid records `i*N … (i+1)*N-1` in source order, so shard
boundaries depend only on the input, never on how a run went. Each shard is written under a
temporary name, re-read and validated, then renamed; its completion marker is written last.
A killed run resumes by skipping shards whose marker is present and produces the same bytes
as an uninterrupted one. Records whose image is missing, truncated or corrupt go to the
shard's quarantine table; nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from collections.abc import Callable

from PIL import (BmpImagePlugin, GifImagePlugin, Image, JpegImagePlugin, MpoImagePlugin,  # noqa: F401
                 PngImagePlugin, TiffImagePlugin, WebPImagePlugin)   # the allowed formats, registered

from mm_assets.sources.quarantine import QuarantineRows, counts_by_reason
from mm_assets.sources.reasons import Reason
from mm_assets.sources.records import Record, Rejection, decode_element, mint_sample_id, \
    repeat_sample_id, validate_record
from mm_assets.sources.tar_index import MemberReader, is_gzip_name
from mm_assets.storage import Storage, canonical_json, file_storage
from mm_assets.webdataset_io import shard_digest, validate_shard, write_shard

INGEST_CODE_VERSION = "2"   # 2: a sample's origin names its annotation file, not where it is
DEFAULT_SAMPLES_PER_SHARD = 1000

_EXT_OF_FORMAT = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp",
                  "TIFF": "tiff"}


class IngestInterrupted(RuntimeError):
    """Raised by failure-injection hooks in tests; never caught by the ingest itself."""


def shard_name(i: int) -> str:
    return f"shard-{i:06d}"


def raw_shards_version(source_manifest: dict, domain: str, samples_per_shard: int) -> str:
    """Content identity of one domain's shards: its records, their inputs, the code."""
    d = source_manifest["domains"][domain]
    inputs = [[a["source_name"], a["sha256"]] for a in source_manifest["annotations"]]
    tars = [[t["source_name"], t["tarball"], t["sha256"]] for t in source_manifest["tarballs"]]
    payload = [INGEST_CODE_VERSION, samples_per_shard, domain, d["sha256"], inputs, tars]
    return hashlib.sha256(canonical_json(payload)).hexdigest()[:20]


# The formats training and evaluation read (`mm_assets.training.data.IMAGE_EXTS`); MPO is a
# JPEG with extra frames (phones write it) and is stored as one. Anything else — PPM, EPS
# (whose plugin would start Ghostscript), ICO… — is never opened by another plugin.
ALLOWED_IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")    # (JPEG's opener yields MPO too)
# A real training image is a few megapixels; beyond this, decoding costs gigabytes.
MAX_IMAGE_PIXELS = 40_000_000


# Formats recognised (by their first bytes, without opening them) so that they are reported as
# unsupported rather than corrupt.
_OTHER_FORMATS = ((b"%!PS", "PostScript/EPS"), (b"\xc5\xd0\xd3\xc6", "EPS"), (b"%PDF", "PDF"),
                  (b"8BPS", "PSD"), (b"\x00\x00\x01\x00", "ICO"), (b"\x00\x00\x00\x0cjP", "JPEG 2000"),
                  (b"\xff\x4f\xff\x51", "JPEG 2000"), (b"<svg", "SVG"), (b"<?xml", "SVG/XML"), (b"qoif", "QOI"),
                  (b"\x76\x2f\x31\x01", "OpenEXR"), (b"#?RADIANCE", "HDR"), (b"DDS ", "DDS"))


def _other_format(data: bytes) -> str | None:
    head = data[:16]
    if len(head) >= 3 and head[0:1] == b"P" and head[1:2] in b"1234567" and head[2:3] in b" \t\r\n":
        return "PNM (PBM/PGM/PPM)"
    if head[4:8] == b"ftyp":
        return "HEIF/AVIF"
    return next((name for magic, name in _OTHER_FORMATS if head.startswith(magic)), None)


class UnusableImage(ValueError):
    """Image bytes that are whole but cannot be used: an unsupported format or too many pixels."""

    def __init__(self, reason: Reason, detail: str):
        super().__init__(detail)
        self.reason = reason


def inspect_image(data: bytes) -> tuple[str, int, int]:
    """Check that the image bytes are whole, decodable and usable; (ext, width, height).

    Only the allowed formats are tried. The size is checked from the header before any pixel
    is decoded. JPEG has no checksums, so it is decoded (DCT-scaled to 1/8, which still reads
    every byte). PNG carries a CRC per chunk, but valid CRCs around an invalid deflate stream
    still fail in training: `verify()` checks the CRCs, then the pixels are decoded.
    """
    try:
        with warnings.catch_warnings():     # the size is refused below, with the record's name
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=ALLOWED_IMAGE_FORMATS)
    except Image.UnidentifiedImageError:
        other = _other_format(data)
        if other is None:       # no image format at all: garbage or a cut-off header
            raise
        raise UnusableImage(Reason.UNSUPPORTED_IMAGE, f"a {other} image; the pipeline reads "
                                                      f"{', '.join(ALLOWED_IMAGE_FORMATS)}") from None
    except Image.DecompressionBombError as exc:
        raise UnusableImage(Reason.IMAGE_TOO_LARGE, str(exc)) from None
    with im:
        fmt = im.format or ""
        width, height = im.size
        if width * height > MAX_IMAGE_PIXELS:
            raise UnusableImage(Reason.IMAGE_TOO_LARGE, f"{width}×{height} = {width * height:,} pixels "
                                                        f"(at most {MAX_IMAGE_PIXELS:,})")
        if fmt == "PNG":
            im.verify()
        else:
            if fmt in ("JPEG", "MPO"):
                im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            im.load()
    if fmt == "PNG":
        with Image.open(io.BytesIO(data), formats=("PNG",)) as im:
            im.load()
    return _EXT_OF_FORMAT[fmt], width, height


class _Readers:
    """Open annotation files and tarball readers, reused across a shard."""

    def __init__(self, source_out: Storage, source_manifest: dict, storage_options: dict):
        self.source_out = source_out
        self.storage_options = storage_options
        self.tarball_info = {(t["source_name"], t["tarball"]): t for t in source_manifest["tarballs"]}
        self.annotation_uri = {a["source_name"]: a["uri"] for a in source_manifest["annotations"]}
        self._annotations: dict[str, object] = {}
        self._members: dict[tuple[str, str], MemberReader] = {}

    def element_bytes(self, source_name: str, offset: int, length: int) -> bytes:
        f = self._annotations.get(source_name)
        if f is None:
            st, name = file_storage(self.annotation_uri[source_name], self.storage_options)
            f = self._annotations[source_name] = st.open_read(name, block_size=8 << 20)
        f.seek(offset)
        return f.read(length)

    def image_bytes(self, source_name: str, tarball: str, offset: int, size: int) -> bytes:
        key = (source_name, tarball)
        r = self._members.get(key)
        if r is None:
            info = self.tarball_info[key]
            st, name = file_storage(info["uri"], self.storage_options)
            seek = self.source_out.read_bytes(info["seek_points"]) if info.get("seek_points") else None
            r = self._members[key] = MemberReader(st.open_read(name, block_size=4 << 20),
                                                  is_gzip_name(tarball), seek)
        return r.read(offset, size)

    def close(self) -> None:
        for f in self._annotations.values():
            f.close()
        for r in self._members.values():
            r.close()


def _sample_fields(rec: Record, sample_id: str, domain: str, row: dict,
                   image: tuple[bytes, str, int, int, str] | None) -> dict[str, bytes]:
    meta = {
        "sample_id": sample_id, "domain": domain, "source": rec.source,
        "original_id": rec.original_id, "id_type": rec.id_type,
        "conversations": rec.conversations, "fixes": rec.fixes,
        "origin": {"source_name": row["source_name"], "annotation": row["annotation"],
                   "ordinal": row["ordinal"], "tarball": row.get("tarball")},
        "image": None,
    }
    fields = {}
    if image is not None:
        data, ext, w, h, sha = image
        meta["image"] = {"path": rec.image, "sha256": sha, "ext": ext, "width": w, "height": h}
        fields[ext] = data
    fields["json"] = json.dumps(meta, ensure_ascii=False, sort_keys=True).encode()
    return fields


def _build_shard(rows: list[dict], domain: str, readers: _Readers, seen: dict[str, int],
                 on_sample: Callable[[int], None] | None) -> tuple[list, list[str], QuarantineRows]:
    """Prepare one shard's samples `(key, fields)`, their content ids before repeat
    numbering, and the shard's quarantine rows."""
    quarantine = QuarantineRows()
    # Read images in tarball order: sequential decompression instead of random seeks.
    images: dict[tuple[str, int], bytes | Exception] = {}
    wanted = sorted((r for r in rows if r["image_status"] == "ok"),
                    key=lambda r: (r["source_name"], r["tarball"], r["member_offset"]))
    for r in wanted:
        try:
            images[r["source_name"], r["ordinal"]] = readers.image_bytes(r["source_name"], r["tarball"],
                                                        r["member_offset"], r["member_size"])
        except (EOFError, OSError) as exc:
            images[r["source_name"], r["ordinal"]] = exc
    samples, base_ids = [], []
    for j, row in enumerate(rows):
        where = dict(stage="raw_shards", source_name=row["source_name"], annotation=row["annotation"],
                     ordinal=row["ordinal"], offset=row["offset"], domain=domain, source=row["source"],
                     original_id=row["original_id"], image=row["image"])
        value = decode_element(readers.element_bytes(row["source_name"], row["offset"], row["length"]))
        rec = value if isinstance(value, Rejection) else validate_record(value, {row["source"]: domain})
        if isinstance(rec, Rejection):  # the annotation file changed since the source scan
            quarantine.add(**where, reason=rec.reason, detail=f"on re-read: {rec.detail}")
            continue
        image = None
        if rec.image is not None:
            status = row["image_status"]
            if status == "missing":
                quarantine.add(**where, reason=Reason.MISSING_IMAGE,
                               detail=f"{rec.image!r} is in none of the source's tarballs")
                continue
            if status == "refused":
                quarantine.add(**where, reason=Reason.REFUSED_MEMBER,
                               detail=f"{rec.image!r} in {row['tarball']} is {row['refused']}")
                continue
            if status == "truncated":
                quarantine.add(**where, reason=Reason.TRUNCATED_TARBALL,
                               detail=f"{rec.image!r} lies in the lost part of truncated tarball "
                                      f"{row.get('truncated_tarball') or row.get('tarball')}")
                continue
            data = images[row["source_name"], row["ordinal"]]
            if isinstance(data, Exception):
                quarantine.add(**where, reason=Reason.TRUNCATED_TARBALL,
                               detail=f"{rec.image!r} in {row['tarball']}: {data}")
                continue
            try:
                ext, w, h = inspect_image(data)
            except UnusableImage as exc:
                quarantine.add(**where, reason=exc.reason, detail=f"{rec.image!r} ({len(data)} bytes): {exc}")
                continue
            except Exception as exc:  # PIL raises many types for bad bytes
                quarantine.add(**where, reason=Reason.CORRUPT_IMAGE,
                               detail=f"{rec.image!r} ({len(data)} bytes) does not decode: {type(exc).__name__}: {exc}")
                continue
            image = (data, ext, w, h, hashlib.sha256(data).hexdigest())
        sample_id = mint_sample_id(rec, image[4] if image else None)
        occurrence = seen.get(sample_id, 0)
        seen[sample_id] = occurrence + 1
        key = sample_id if occurrence == 0 else repeat_sample_id(sample_id, occurrence)
        samples.append((key, _sample_fields(rec, key, domain, row, image)))
        base_ids.append(sample_id)
        if on_sample is not None:
            on_sample(j)
    return samples, base_ids, quarantine


def ingest_domain(source_out: Storage, source_manifest: dict, domain: str, out: Storage,
                  storage_options: dict | None = None,
                  samples_per_shard: int = DEFAULT_SAMPLES_PER_SHARD,
                  on_sample: Callable[[int, int], None] | None = None,
                  log: Callable[[str], None] = lambda _msg: None) -> dict:
    """Write one domain's WebDataset shards into `out`; resume from completion markers.

    `on_sample(shard_index, position)` is called after each sample is prepared (tests use it
    to inject failures mid-shard).
    """
    elements = source_out.read_parquet(source_manifest["domains"][domain]["elements"])
    rows_all = elements.to_dicts()
    n_shards = (len(rows_all) + samples_per_shard - 1) // samples_per_shard
    readers = _Readers(source_out, source_manifest, storage_options or {})
    seen: dict[str, int] = {}
    shards = []
    resumed = 0
    try:
        for i in range(n_shards):
            name = shard_name(i)
            marker_rel = f"{name}.done.json"
            if out.exists(marker_rel):
                marker = out.read_json(marker_rel)
                if out.exists(f"{name}.tar") and out.size(f"{name}.tar") == marker["bytes"]:
                    for base in marker["base_ids"]:
                        seen[base] = seen.get(base, 0) + 1
                    shards.append(marker)
                    resumed += 1
                    continue
            rows = rows_all[i * samples_per_shard:(i + 1) * samples_per_shard]
            hook = None if on_sample is None else (lambda j, _i=i: on_sample(_i, j))
            samples, base_ids, quarantine = _build_shard(rows, domain, readers, seen, hook)
            with out.open_write(f"{name}.tar") as f:
                write_shard(f, samples)
            written = out.read_bytes(f"{name}.tar")
            validate_shard(io.BytesIO(written), shard_digest(samples))
            tar_sha = hashlib.sha256(written).hexdigest()
            qdf = quarantine.frame()
            q_sha = out.write_parquet(f"{name}.quarantine.parquet", qdf)
            marker = {"shard": name, "tar": f"{name}.tar", "sha256": tar_sha, "bytes": out.size(f"{name}.tar"),
                      "samples": len(samples), "keys": [k for k, _ in samples],
                      "base_ids": base_ids,
                      "quarantine": f"{name}.quarantine.parquet", "quarantine_sha256": q_sha,
                      "quarantined": qdf.height, "by_reason": counts_by_reason(qdf)}
            out.write_json(marker_rel, marker)
            shards.append(marker)
            log(f"{domain}: wrote {name} ({len(samples)} samples, {qdf.height} quarantined)")
    finally:
        readers.close()
    by_reason: dict[str, int] = {}
    for s in shards:
        for r, n in s["by_reason"].items():
            by_reason[r] = by_reason.get(r, 0) + n
    manifest = {
        "domain": domain, "code_version": INGEST_CODE_VERSION, "samples_per_shard": samples_per_shard,
        "records_in": len(rows_all), "samples": sum(s["samples"] for s in shards),
        "quarantined": sum(s["quarantined"] for s in shards), "by_reason": by_reason,
        "shards": [{k: s[k] for k in ("shard", "tar", "sha256", "bytes", "samples", "quarantine",
                                      "quarantine_sha256", "quarantined")} for s in shards],
        "resumed_shards": resumed,
    }
    out.write_json("manifest.json", manifest)
    return manifest
