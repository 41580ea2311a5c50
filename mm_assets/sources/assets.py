"""Dagster assets of the `sources` stage. Thin: read inputs, call the plain functions, report.

Every asset writes content-addressed artifacts through the storage resource, returns a small
JSON pointer `{"root", "version"}` and uses a content hash as its Dagster DataVersion. When
the artifact for the same inputs already exists it is reused without recomputation.
"""


import io
import time

import dagster as dg
import polars as pl

from mm_assets.partitions import benchmark_partitions, domain_partitions
from mm_assets.sources.eval_sets import load_eval_set
from mm_assets.sources.ingest import INGEST_CODE_VERSION, ingest_domain, raw_shards_version
from mm_assets.sources.quarantine import QUARANTINE_SCHEMA, counts_by_reason
from mm_assets.sources.samples_table import build_samples_table
from mm_assets.sources.source_scan import SCAN_CODE_VERSION, input_fingerprint, scan_sources, source_identity
from mm_assets.metadata import bytes_digest, content_digest, markdown_table
from mm_assets.storage import parquet_bytes
from resources.data_source import MammothSourceResource
from resources.storage import StorageResource

SAMPLES_CODE_VERSION = "1"
EVAL_SETS_CODE_VERSION = "1"
QUARANTINE_CODE_VERSION = "1"



@dg.asset(group_name="sources", code_version=SCAN_CODE_VERSION, kinds={"json", "parquet"},
          description="One streaming pass over the annotation JSON array(s) and image tarballs: "
                      "per-domain record pointers, tarball member index, gzip seek points, "
                      "record-level quarantine.")
def source(context: dg.AssetExecutionContext, storage: StorageResource,
           mammoth: MammothSourceResource) -> dg.Output[dict]:
    st = storage.get()
    specs = mammoth.specs()
    fingerprint = input_fingerprint(specs, mammoth.domain_map, mammoth.storage_options)
    root = f"source/{fingerprint}"
    out = st.child(root)
    started = time.perf_counter()
    reused = out.exists("manifest.json")
    if reused:
        manifest = out.read_json("manifest.json")
        context.log.info(f"inputs unchanged (fingerprint {fingerprint}): reusing {out.uri('')}")
    else:
        manifest = scan_sources(specs, mammoth.domain_map, out, mammoth.storage_options)
    version = content_digest(source_identity(manifest))
    records = sum(d["records"] for d in manifest["domains"].values())
    return dg.Output(
        {"root": root, "version": version},
        data_version=dg.DataVersion(version),
        metadata={
            "uri": out.uri(""), "reused": reused, "seconds": time.perf_counter() - started,
            "records_passed": records, "quarantined": manifest["quarantine"]["rows"],
            "quarantined_by_reason": dg.MetadataValue.json(manifest["quarantine"]["by_reason"]),
            "records_per_domain": dg.MetadataValue.json({d: v["records"] for d, v in manifest["domains"].items()}),
            "annotations": dg.MetadataValue.json(manifest["annotations"]),
            "tarballs": len(manifest["tarballs"]),
            "truncated_tarballs": [t["tarball"] for t in manifest["tarballs"] if t["truncated"]],
        },
    )


@dg.asset(group_name="sources", partitions_def=domain_partitions, code_version=INGEST_CODE_VERSION,
          kinds={"webdataset"},
          description="The domain's records re-sharded into validated WebDataset tars "
                      "({key}.json + {key}.jpg/png), resumable per shard; image-level quarantine.")
def raw_shards(context: dg.AssetExecutionContext, source: dict, storage: StorageResource,
               mammoth: MammothSourceResource) -> dg.Output[dict]:
    domain = context.partition_key
    st = storage.get()
    src = st.child(source["root"])
    manifest = src.read_json("manifest.json")
    version = raw_shards_version(manifest, domain, mammoth.samples_per_shard)
    root = f"raw_shards/{domain}/{version}"
    out = st.child(root)
    started = time.perf_counter()
    reused = out.exists("manifest.json")
    if reused:
        shards = out.read_json("manifest.json")
        context.log.info(f"{domain}: inputs unchanged, reusing {out.uri('')}")
    else:
        shards = ingest_domain(src, manifest, domain, out, mammoth.storage_options,
                               samples_per_shard=mammoth.samples_per_shard, log=context.log.info)
    seconds = time.perf_counter() - started
    data_version = content_digest([[s["sha256"], s["quarantine_sha256"]] for s in shards["shards"]])
    return dg.Output(
        {"root": root, "version": data_version},
        data_version=dg.DataVersion(data_version),
        metadata={
            "uri": out.uri(""), "reused": reused, "seconds": seconds,
            "samples": shards["samples"], "quarantined": shards["quarantined"],
            "quarantined_by_reason": dg.MetadataValue.json(shards["by_reason"]),
            "shards": len(shards["shards"]), "resumed_shards": shards.get("resumed_shards", 0),
            "bytes": sum(s["bytes"] for s in shards["shards"]),
            "samples_per_second": (shards["records_in"] / seconds) if seconds > 0 and not reused else None,
            "shard_sha256": dg.MetadataValue.json({s["tar"]: s["sha256"] for s in shards["shards"]}),
        },
    )


@dg.asset(group_name="sources", partitions_def=domain_partitions, code_version=SAMPLES_CODE_VERSION,
          kinds={"parquet"},
          description="One row per sample of the domain (sample_id minted from content, source, "
                      "original id, image hash, question/answer, turns, shard and key).")
def samples(context: dg.AssetExecutionContext, raw_shards: dict, storage: StorageResource) -> dg.Output[dict]:
    domain = context.partition_key
    st = storage.get()
    rel = f"samples/{domain}/{raw_shards['version']}.parquet"
    reused = st.exists(rel)
    if reused:
        data = st.read_bytes(rel)
        df = pl.read_parquet(io.BytesIO(data))
    else:
        raw = st.child(raw_shards["root"])
        df = build_samples_table(raw, raw.read_json("manifest.json"))
        data = parquet_bytes(df)
        st.write_bytes(rel, data)
    version = bytes_digest(data)
    return dg.Output(
        {"root": rel, "version": version},
        data_version=dg.DataVersion(version),
        metadata={
            "uri": st.uri(rel), "reused": reused, "rows": df.height,
            "with_image": int(df["has_image"].sum()),
            "fixed_records": int((df["fixes"].list.len() > 0).sum()),
            "sources": dg.MetadataValue.json({s: int(n) for s, n in df.group_by("source").len().iter_rows()}),
            "multi_turn": int((df["turns"] > 1).sum()),
            "preview": dg.MetadataValue.md(markdown_table(df.select("sample_id", "source", "question", "answer").head(5))),
        },
    )


@dg.asset(group_name="sources", code_version=QUARANTINE_CODE_VERSION, kinds={"parquet"},
          ins={"raw_shards": dg.AssetIn(partition_mapping=dg.AllPartitionMapping(),
                                        metadata={"allow_missing_partitions": True})},
          description="Every rejected record with its reason, from the record checks and the "
                      "image checks of every ingested domain.")
def quarantine(context: dg.AssetExecutionContext, source: dict, raw_shards: dict,
               storage: StorageResource) -> dg.Output[dict]:
    st = storage.get()
    frames = [st.child(source["root"]).read_parquet("quarantine.parquet")]
    for domain in sorted(raw_shards):
        raw = st.child(raw_shards[domain]["root"])
        for shard in raw.read_json("manifest.json")["shards"]:
            frames.append(raw.read_parquet(shard["quarantine"]))
    df = pl.concat(frames, how="vertical").select(list(QUARANTINE_SCHEMA)).sort(
        ["source_name", "ordinal"])
    version = content_digest([source["version"]] + [raw_shards[d]["version"] for d in sorted(raw_shards)])
    rel = f"quarantine/{version}.parquet"
    st.write_parquet(rel, df)
    missing = sorted(set(domain_partitions.get_partition_keys()) - set(raw_shards))
    return dg.Output(
        {"root": rel, "version": version},
        data_version=dg.DataVersion(version),
        metadata={"uri": st.uri(rel), "rows": df.height,
                  "by_reason": dg.MetadataValue.json(counts_by_reason(df)),
                  "domains_covered": sorted(raw_shards), "domains_not_ingested_yet": missing,
                  "preview": dg.MetadataValue.md(markdown_table(df.select("source_name", "ordinal", "reason", "detail").head(20)))},
    )


@dg.asset(group_name="sources", partitions_def=benchmark_partitions, code_version=EVAL_SETS_CODE_VERSION,
          kinds={"parquet"},
          description="The benchmark's eval export (native fields) cached in one uniform schema.")
def eval_sets(context: dg.AssetExecutionContext, storage: StorageResource,
              mammoth: MammothSourceResource) -> dg.Output[dict]:
    return _cached_export(context, storage.get(), mammoth.eval_storage(), "eval_sets")


@dg.asset(group_name="sources", partitions_def=benchmark_partitions, code_version=EVAL_SETS_CODE_VERSION,
          kinds={"parquet"},
          description="The benchmark's reference split (`<eval dir>/reference/<benchmark>.parquet`, native "
                      "fields): labelled items that are never scored, which targeted synthesis (MM-GEN) reads to "
                      "describe the task's subgroups. Empty, with a warning, when the export has none.")
def reference_sets(context: dg.AssetExecutionContext, storage: StorageResource,
                   mammoth: MammothSourceResource) -> dg.Output[dict]:
    from mm_assets.sample_data.eval_sets import REFERENCE_DIR

    export = mammoth.eval_storage().child(REFERENCE_DIR)
    return _cached_export(context, storage.get(), export, "reference_sets", missing_ok=True)


def _cached_export(context: dg.AssetExecutionContext, st, export, asset: str,
                   missing_ok: bool = False) -> dg.Output[dict]:
    """A benchmark export read into the uniform eval schema, content-addressed under `asset/`."""
    from mm_assets.sources.eval_sets import EVAL_QUARANTINE_SCHEMA, EVAL_SCHEMA

    benchmark = context.partition_key
    if missing_ok and not export.exists(f"{benchmark}.parquet"):
        context.log.warning(f"{benchmark}: no {export.uri(f'{benchmark}.parquet')}: the {asset} split is empty")
        items, bad = pl.DataFrame(schema=EVAL_SCHEMA), pl.DataFrame(schema=EVAL_QUARANTINE_SCHEMA)
    else:
        items, bad = load_eval_set(export, benchmark)
    data = parquet_bytes(items)
    version = bytes_digest(data)
    rel = f"{asset}/{benchmark}/{version}.parquet"
    if not st.exists(rel):
        st.write_bytes(rel, data)
    bad_rel = f"{asset}/{benchmark}/{version}.quarantine.parquet"
    st.write_parquet(bad_rel, bad)
    if bad.height:
        context.log.warning(f"{benchmark}: {bad.height} {asset} rows quarantined: {counts_by_reason(bad)}")
    return dg.Output(
        {"root": rel, "version": version},
        data_version=dg.DataVersion(version),
        metadata={"uri": st.uri(rel), "source": export.uri(f"{benchmark}.parquet"), "items": items.height,
                  "quarantined": bad.height,
                  "quarantined_by_reason": dg.MetadataValue.json(counts_by_reason(bad)),
                  "answer_types": dg.MetadataValue.json({t: int(n) for t, n in items.group_by("answer_type").len().iter_rows()}),
                  "preview": dg.MetadataValue.md(markdown_table(items.select("item_id", "question", "answers").head(5)))},
    )
