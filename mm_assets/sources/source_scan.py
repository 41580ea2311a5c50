"""The `source` step: one streaming pass over each annotation file and each image tarball.

It produces, under an output Storage:
- `elements/<domain>.parquet`: every record that passed the record checks, as a pointer
  (source name, the annotation file's name, ordinal, byte offset and length) plus where its image lives (tarball,
  member offset and size, or why it is not there). Domains are split here, in one pass over
  the JSON array, so each `raw_shards[domain]` reads only its own records.
- `members.parquet` and `seek_points/…`: the tarball member index and gzip seek points.
- `quarantine.parquet`: records rejected by the record checks, with reasons.
- `manifest.json`: input hashes, counts, tarball health.
Memory stays flat in the size of the JSON array: elements are streamed, rows are flushed to
Parquet parts every `flush_rows`, and the image join runs in Polars' streaming engine.

Where the inputs are is lineage, not identity: only the manifest's `uri` entries name their
location (readers find a source's files through them), and `source_identity` leaves them out.
Every other artifact names an annotation file by its source and file name, so the same files
at another path, or in a bucket, give the same versions here and downstream — a moved data set
is re-scanned (cheap) but not re-ingested, re-embedded or retrained.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from mm_assets.scratch import scratch_dir
from mm_assets.sources.json_array import JsonArrayScanner
from mm_assets.sources.quarantine import QuarantineRows, counts_by_reason
from mm_assets.sources.reasons import Reason
from mm_assets.sources.records import Rejection, decode_element, validate_record
from mm_assets.sources.tar_index import build_seek_points, index_tarball, is_gzip_name
from mm_assets.storage import Storage, canonical_json, file_storage
from mm_assets.taxonomy import DOMAINS

SCAN_CODE_VERSION = "3"   # 3: artifacts name annotation files by name, not location
TARBALL_SUFFIXES = (".tar.gz", ".tgz", ".tar")

ELEMENT_SCHEMA = {
    "source_name": pl.String, "annotation": pl.String, "ordinal": pl.Int64, "offset": pl.Int64,
    "length": pl.Int64, "source": pl.String, "original_id": pl.String, "image": pl.String,
}
MEMBER_SCHEMA = {
    "source_name": pl.String, "path": pl.String, "tarball": pl.String, "member_offset": pl.Int64,
    "member_size": pl.Int64, "complete": pl.Boolean, "refused": pl.String,
}


@dataclass(frozen=True)
class SourceSpec:
    """One Mammoth-layout source: a JSON array and the directory holding its image tarballs."""
    name: str
    annotations: str   # URI or path of the JSON array
    images: str        # URI or path of the directory of tarballs ("" for a text-only source)


def annotation_name(uri: str) -> str:
    """How artifacts name an annotation file: its file name, without where it is."""
    return uri.rstrip("/").rsplit("/", 1)[-1]


def source_identity(manifest: dict) -> dict:
    """The manifest without the inputs' locations: what the `source` data version digests."""
    def without_uri(entry: dict) -> dict:
        return {k: v for k, v in entry.items() if k != "uri"}

    return {**manifest, "domain_map": without_uri(manifest["domain_map"]),
            "annotations": [without_uri(a) for a in manifest["annotations"]],
            "tarballs": [without_uri(t) for t in manifest["tarballs"]]}


def load_domain_map(storage: Storage, rel: str) -> dict[str, str]:
    mapping = storage.read_json(rel)
    if not isinstance(mapping, dict):
        raise ValueError(f"{storage.uri(rel)}: the source -> domain mapping must be a JSON object")
    bad = {s: d for s, d in mapping.items() if d not in DOMAINS}
    if bad:
        raise ValueError(f"{storage.uri(rel)}: unknown domains {sorted(set(bad.values()))} "
                         f"for sources {sorted(bad)[:5]}; domains are {DOMAINS}")
    return mapping


class MissingInput(FileNotFoundError):
    """A configured input that is not there: a configuration error, raised before any work."""


def check_inputs(specs: list[SourceSpec], domain_map_uri: str, storage_options: dict) -> None:
    """Every configured input exists (inputs are read-only: nothing is created for them)."""
    missing = []
    for what, uri, kind in [("domain map", domain_map_uri, "file"),
                            *[(f"source {s.name!r} annotations", s.annotations, "file") for s in specs],
                            *[(f"source {s.name!r} images", s.images, "directory") for s in specs if s.images]]:
        st, name = file_storage(uri, storage_options)
        try:
            info = st.info(name)
        except FileNotFoundError:
            missing.append(f"{what}: {uri} does not exist")
            continue
        if kind == "directory" and info.get("type") != "directory" and not uri.startswith("s3://"):
            missing.append(f"{what}: {uri} is not a directory")
        if kind == "file" and info.get("type") == "directory":
            missing.append(f"{what}: {uri} is a directory, not a file")
    if missing:
        raise MissingInput("inputs not found (check MM_SOURCE_CONFIG / the source resource): " + "; ".join(missing))


def input_fingerprint(specs: list[SourceSpec], domain_map_uri: str, storage_options: dict) -> str:
    """Cheap identity of the inputs (paths, sizes, modification stamps) for reuse checks."""
    check_inputs(specs, domain_map_uri, storage_options)
    parts = [SCAN_CODE_VERSION]
    for uri in [domain_map_uri] + [s.annotations for s in specs]:
        st, name = file_storage(uri, storage_options)
        info = st.info(name)
        parts.append([uri, info.get("size"), str(info.get("mtime") or info.get("LastModified") or info.get("ETag"))])
    for s in specs:
        if s.images:
            st = Storage(s.images, storage_options)
            for name in st.list("", suffix=""):
                if name.endswith(TARBALL_SUFFIXES):
                    info = st.info(name)
                    parts.append([s.images, name, info.get("size"),
                                  str(info.get("mtime") or info.get("LastModified") or info.get("ETag"))])
    return hashlib.sha256(canonical_json(parts)).hexdigest()[:20]


class _PartWriter:
    """Buffers rows per key and flushes them as numbered Parquet parts in a local directory."""

    def __init__(self, root: Path, schema: dict, flush_rows: int):
        self.root, self.schema, self.flush_rows = root, schema, flush_rows
        self.buffers: dict[str, list[dict]] = {}
        self.parts: dict[str, int] = {}
        self.counts: dict[str, int] = {}

    def add(self, key: str, row: dict) -> None:
        buf = self.buffers.setdefault(key, [])
        buf.append(row)
        self.counts[key] = self.counts.get(key, 0) + 1
        if len(buf) >= self.flush_rows:
            self.flush(key)

    def flush(self, key: str) -> None:
        rows = self.buffers.get(key)
        if not rows:
            return
        d = self.root / key
        d.mkdir(parents=True, exist_ok=True)
        n = self.parts.get(key, 0)
        pl.DataFrame(rows, schema=self.schema).write_parquet(d / f"part-{n:06d}.parquet")
        self.parts[key] = n + 1
        self.buffers[key] = []

    def close(self) -> None:
        for key in list(self.buffers):
            self.flush(key)

    def scan(self, key: str) -> pl.LazyFrame:
        if not self.parts.get(key):
            return pl.DataFrame(schema=self.schema).lazy()
        return pl.scan_parquet(str(self.root / key / "*.parquet"))


def _scan_annotations(spec: SourceSpec, domain_of: dict[str, str], storage_options: dict,
                      elements: _PartWriter, quarantine: QuarantineRows) -> dict:
    in_dir, name = file_storage(spec.annotations, storage_options)
    annotation = annotation_name(spec.annotations)
    n_ok = 0
    with in_dir.open_read(name, block_size=8 << 20) as f:
        scanner = JsonArrayScanner(f)
        for el in scanner:
            where = dict(stage="source", source_name=spec.name, annotation=annotation,
                         ordinal=el.ordinal, offset=el.offset)
            if el.unbalanced:
                quarantine.add(**where, reason=Reason.INVALID_JSON,
                               detail=f"not JSON: {el.problem} ({el.length} bytes up to the next element)")
                continue
            if el.oversized:
                quarantine.add(**where, reason=Reason.ELEMENT_TOO_LARGE, detail=el.problem)
                continue
            if el.truncated:
                quarantine.add(**where, reason=Reason.TRUNCATED_JSON,
                               detail=f"the file ends inside this element ({el.length} bytes read)")
                continue
            value = decode_element(el.data)
            if isinstance(value, Rejection):
                quarantine.add(**where, reason=value.reason, detail=value.detail)
                continue
            rec = validate_record(value, domain_of)
            if isinstance(rec, Rejection):
                src = value.get("source") if isinstance(value, dict) else None
                src = src if isinstance(src, str) else None
                rid = value.get("id") if isinstance(value, dict) else None
                quarantine.add(**where, reason=rec.reason, detail=rec.detail, source=src,
                               domain=domain_of.get(src) if src else None,
                               original_id=None if rid is None else str(rid))
                continue
            elements.add(rec.domain, {"source_name": spec.name, "annotation": annotation,
                                      "ordinal": el.ordinal, "offset": el.offset, "length": len(el.data),
                                      "source": rec.source, "original_id": rec.original_id,
                                      "image": rec.image})
            n_ok += 1
    return {"uri": spec.annotations, "sha256": scanner.sha256, "bytes": scanner.bytes_read,
            "array_closed": scanner.closed_properly, "byte_order_mark": scanner.bom,
            "resynchronised": scanner.resyncs, "records_passed": n_ok}


def _index_images(spec: SourceSpec, storage_options: dict, members: _PartWriter,
                  out: Storage) -> list[dict]:
    if not spec.images:
        return []
    st = Storage(spec.images, storage_options)
    summaries = []
    for name in st.list(""):
        if not name.endswith(TARBALL_SUFFIXES):
            continue
        if st.info(name).get("type") != "file":
            summaries.append({"source_name": spec.name, "tarball": name, "uri": st.uri(name), "sha256": None,
                              "compressed_bytes": 0, "uncompressed_bytes": 0, "members": 0, "incomplete_members": 0,
                              "refused_members": 0, "truncated": False, "error": "not a regular file: skipped", "seek_points": None})
            continue
        with st.open_read(name, block_size=8 << 20) as f:
            ix = index_tarball(f, name)
        seek_rel = None
        if is_gzip_name(name):
            with st.open_read(name, block_size=8 << 20) as f:
                seek_rel = f"seek_points/{spec.name}/{name}.gzidx"
                # a decompression bomb is indexed only as far as the index pass read it
                out.write_bytes(seek_rel, build_seek_points(f, up_to=ix.stopped_at))
        for path, off, size, complete in ix.members:
            members.add(spec.name, {"source_name": spec.name, "path": path, "tarball": name,
                                    "member_offset": off, "member_size": size, "complete": complete,
                                    "refused": None})
        for path, why in ix.refused:
            members.add(spec.name, {"source_name": spec.name, "path": path, "tarball": name,
                                    "member_offset": None, "member_size": None, "complete": False,
                                    "refused": why})
        summaries.append({"source_name": spec.name, "tarball": name, "uri": st.uri(name),
                          "sha256": ix.sha256, "compressed_bytes": ix.compressed_bytes,
                          "uncompressed_bytes": ix.uncompressed_bytes, "members": len(ix.members),
                          "incomplete_members": sum(not c for *_, c in ix.members),
                          "refused_members": len(ix.refused),
                          "truncated": ix.truncated, "error": ix.error, "seek_points": seek_rel})
    return summaries


def _resolve_images(elements: pl.LazyFrame, members: pl.LazyFrame,
                    truncated_dirs: pl.LazyFrame) -> pl.LazyFrame:
    """Attach each element's image location, or why it has none ("missing" / "truncated" /
    "refused"). A path held by several tarballs resolves to the first usable one."""
    first_member = members.sort(["source_name", "path", pl.col("refused").is_not_null(), "tarball"]).unique(
        subset=["source_name", "path"], keep="first", maintain_order=True)
    parent = pl.col("image").str.replace(r"/[^/]*$", "")
    joined = (elements.with_columns(parent.alias("_parent"))
              .join(first_member, left_on=["source_name", "image"], right_on=["source_name", "path"],
                    how="left")
              .join(truncated_dirs, left_on=["source_name", "_parent"], right_on=["source_name", "dir"],
                    how="left"))
    status = (pl.when(pl.col("image").is_null()).then(pl.lit(None, pl.String))
              .when(pl.col("refused").is_not_null()).then(pl.lit("refused"))
              .when(pl.col("tarball").is_not_null() & pl.col("complete")).then(pl.lit("ok"))
              .when(pl.col("tarball").is_not_null()).then(pl.lit("truncated"))
              .when(pl.col("truncated_tarball").is_not_null()).then(pl.lit("truncated"))
              .otherwise(pl.lit("missing")))
    return (joined.with_columns(status.alias("image_status"))
            .drop(["_parent", "complete"])
            .sort(["source_name", "ordinal"]))


def scan_sources(specs: list[SourceSpec], domain_map_uri: str, out: Storage,
                 storage_options: dict | None = None, flush_rows: int = 50_000) -> dict:
    """Run the source step into `out` and return its manifest (also written as manifest.json)."""
    storage_options = storage_options or {}
    check_inputs(specs, domain_map_uri, storage_options)
    map_dir, map_name = file_storage(domain_map_uri, storage_options)
    map_bytes = map_dir.read_bytes(map_name)
    domain_of = load_domain_map(map_dir, map_name)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"source names must be unique, got {names}")
    quarantine = QuarantineRows()
    with scratch_dir("mm-source-") as tmp:
        elements = _PartWriter(Path(tmp) / "elements", ELEMENT_SCHEMA, flush_rows)
        members = _PartWriter(Path(tmp) / "members", MEMBER_SCHEMA, flush_rows)
        annotations, tarballs = [], []
        for spec in specs:
            annotations.append({"source_name": spec.name, **_scan_annotations(
                spec, domain_of, storage_options, elements, quarantine)})
            tarballs.extend(_index_images(spec, storage_options, members, out))
        elements.close()
        members.close()

        all_members = pl.concat([members.scan(s.name) for s in specs], how="vertical")
        truncated_names = [(t["source_name"], t["tarball"]) for t in tarballs if t["truncated"]]
        trunc_dirs = (all_members
                      .filter(pl.struct(["source_name", "tarball"]).is_in(
                          [{"source_name": s, "tarball": t} for s, t in truncated_names]))
                      .select("source_name", pl.col("path").str.replace(r"/[^/]*$", "").alias("dir"),
                              pl.col("tarball").alias("truncated_tarball"))
                      .unique(subset=["source_name", "dir"], keep="first"))
        local_members = Path(tmp) / "members.parquet"
        all_members.sort(["source_name", "path", "tarball"]).sink_parquet(str(local_members))
        out.put_local_file(str(local_members), "members.parquet")

        domains = {}
        for domain in DOMAINS:
            local = Path(tmp) / f"{domain}.parquet"
            _resolve_images(elements.scan(domain), pl.scan_parquet(str(local_members)),
                            trunc_dirs).sink_parquet(str(local))
            with open(local, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            out.put_local_file(str(local), f"elements/{domain}.parquet")
            domains[domain] = {"elements": f"elements/{domain}.parquet", "sha256": digest,
                               "records": elements.counts.get(domain, 0)}
    qdf = quarantine.frame()
    q_sha = out.write_parquet("quarantine.parquet", qdf)
    manifest = {
        "code_version": SCAN_CODE_VERSION,
        "domain_map": {"uri": domain_map_uri, "sha256": hashlib.sha256(map_bytes).hexdigest()},
        "annotations": annotations,
        "tarballs": tarballs,
        "domains": domains,
        "quarantine": {"path": "quarantine.parquet", "sha256": q_sha, "rows": qdf.height,
                       "by_reason": counts_by_reason(qdf)},
        "members": {"path": "members.parquet"},
    }
    out.write_json("manifest.json", manifest)
    return manifest
