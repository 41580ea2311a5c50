"""The `samples[domain]` table: one row per ingested sample, read back from the shards."""

from __future__ import annotations

import json

import polars as pl

from mm_assets.storage import Storage
from mm_assets.webdataset_io import ShardError, read_shard

IMAGE_TOKEN = "<image>"

SAMPLES_SCHEMA = {
    "sample_id": pl.String, "domain": pl.String, "source": pl.String, "original_id": pl.String,
    "id_type": pl.String, "has_image": pl.Boolean, "image_path": pl.String, "image_sha256": pl.String,
    "image_ext": pl.String, "width": pl.Int32, "height": pl.Int32, "question": pl.String,
    "answer": pl.String, "turns": pl.Int32, "conversations": pl.String, "fixes": pl.List(pl.String),
    "shard": pl.String, "key": pl.String, "source_name": pl.String, "annotation": pl.String,
    "ordinal": pl.Int64,
}


def sample_row(key: str, fields: dict[str, bytes], shard: str) -> dict:
    meta = json.loads(fields["json"])
    if meta["sample_id"] != key:
        raise ShardError(f"{shard}: key {key!r} holds sample_id {meta['sample_id']!r}")
    img = meta.get("image")
    if img is not None and img["ext"] not in fields:
        raise ShardError(f"{shard}: sample {key!r} lacks its {img['ext']!r} image member")
    convs = meta["conversations"]
    return {
        "sample_id": key, "domain": meta["domain"], "source": meta["source"],
        "original_id": meta["original_id"], "id_type": meta["id_type"], "has_image": img is not None,
        "image_path": img["path"] if img else None, "image_sha256": img["sha256"] if img else None,
        "image_ext": img["ext"] if img else None, "width": img["width"] if img else None,
        "height": img["height"] if img else None,
        "question": convs[0]["value"].replace(IMAGE_TOKEN, "").strip(),
        "answer": convs[1]["value"].strip(), "turns": len(convs) // 2,
        "conversations": json.dumps(convs, ensure_ascii=False), "fixes": meta["fixes"],
        "shard": shard, "key": key, "source_name": meta["origin"]["source_name"],
        "annotation": meta["origin"]["annotation"], "ordinal": meta["origin"]["ordinal"],
    }


def build_samples_table(raw: Storage, raw_manifest: dict) -> pl.DataFrame:
    """Read every shard of one domain's raw_shards version into the samples table."""
    rows = []
    for shard in raw_manifest["shards"]:
        with raw.open_read(shard["tar"]) as f:
            rows.extend(sample_row(k, fs, shard["tar"]) for k, fs in read_shard(f))
    df = pl.DataFrame(rows, schema=SAMPLES_SCHEMA)
    if df.height != raw_manifest["samples"]:
        raise ShardError(f"read {df.height} samples, the manifest lists {raw_manifest['samples']}")
    dups = df.filter(pl.col("sample_id").is_duplicated())
    if dups.height:
        raise ShardError(f"sample_id not unique: {dups['sample_id'].unique().to_list()[:5]}")
    return df
