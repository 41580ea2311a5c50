"""The trusted pool: a small clean set the default perplexity reference model is trained on.

DFN-style filtering (notes/mammoth-and-peers.md §3.1) needs a reference model trained on a
small *high-quality* set. The generator ships one next to the main data, in the same Mammoth
layout (``trusted/mammoth_si.json`` + ``trusted/images/*.tar.gz``): fresh draws from every
family of every domain — not copies of main records — with no planted defect (no low-quality
answer, no near-duplicate, no eval leak, no missing ``<image>``).

Draws come from their own random stream (``"trusted"``, vs ``"train"`` for the main records),
keyed per item, so writing the pool changes no byte of the other outputs and its content
depends only on (scale, seed).
"""

from __future__ import annotations

from pathlib import Path

from .canvas import EXT, Sizing
from .families import DOMAINS, families_of
from .plan import weighted_family
from .render import draw_base
from .rng import rng_for
from .scales import Scale
from .writer import JsonArrayWriter, write_tar_gz

STREAM = "trusted"
TRUSTED_JSON = "trusted/mammoth_si.json"
TRUSTED_IMAGES = "trusted/images"
MAX_PER_DOMAIN = 48
IMAGES_PER_TARBALL = 200


def trusted_records_per_domain(scale: Scale) -> int:
    """48 per domain at full scales (384 records); a sixth of a shrunken scale, at least 4."""
    return max(4, min(MAX_PER_DOMAIN, scale.records_per_domain // 6))


def trusted_record(domain: str, index: int, seed: int, sizing: Sizing) -> tuple[dict, bytes | None]:
    """One clean record of the pool (and its image bytes, None for a text-only row)."""
    fam = weighted_family(rng_for(seed, STREAM, "family", domain, index), families_of(domain))
    image, conv, _ = draw_base(domain, index, fam.key, seed, sizing, stream=STREAM)
    record: dict = {"id": f"trusted_{domain}_{index:05d}"}
    if image is not None:
        record["image"] = f"trusted/{fam.directory}/{index:05d}.{EXT[fam.fmt]}"
    record["conversations"] = conv
    record["source"] = fam.source
    return record, image


def write_trusted_pool(out_dir: str | Path, scale: Scale, seed: int) -> dict:
    """Write the pool under ``out_dir`` (the data set's root); return counts and paths."""
    out = Path(out_dir)
    sizing = Sizing(scale.img_min, scale.img_max)
    n = trusted_records_per_domain(scale)
    images: list[tuple[str, bytes]] = []
    per_domain = {}
    with JsonArrayWriter(out / TRUSTED_JSON) as json_out:
        for domain in DOMAINS:
            for i in range(n):
                record, image = trusted_record(domain, i, seed, sizing)
                json_out.add(record)
                if image is not None:
                    images.append((record["image"], image))
            per_domain[domain] = n
    tar_dir = out / TRUSTED_IMAGES
    tar_dir.mkdir(parents=True, exist_ok=True)
    tarballs = []
    for k in range(0, len(images), IMAGES_PER_TARBALL):
        path = tar_dir / f"shard_{k // IMAGES_PER_TARBALL:04d}.tar.gz"
        write_tar_gz(path, images[k:k + IMAGES_PER_TARBALL], scale.gzip_level)
        tarballs.append(path)
    for stale in tar_dir.glob("shard_*.tar.gz"):
        if stale not in tarballs:
            stale.unlink()
    return {"records": n * len(DOMAINS), "per_domain": per_domain, "images": len(images),
            "json": str(out / TRUSTED_JSON), "images_dir": str(tar_dir)}


__all__ = ["TRUSTED_IMAGES", "TRUSTED_JSON", "trusted_records_per_domain", "write_trusted_pool"]
