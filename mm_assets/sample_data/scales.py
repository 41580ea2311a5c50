"""Size presets for the generated data set."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Scale:
    name: str
    records_per_domain: int   # main records per domain, planted items included
    eval_items: int           # items per benchmark
    img_min: int              # image side range in pixels
    img_max: int
    images_per_shard: int     # target number of images per main tarball
    chunk_size: int           # records per worker task
    gzip_level: int


SCALES: dict[str, Scale] = {
    "demo": Scale("demo", 300, 100, 192, 448, 1000, 40, 6),
    "bench": Scale("bench", 12_500, 100, 128, 256, 5000, 500, 1),
}


def resolve_scale(name: str, records_per_domain: int | None = None,
                  eval_items: int | None = None) -> Scale:
    if name not in SCALES:
        raise ValueError(f"unknown scale {name!r}; expected one of {sorted(SCALES)}")
    scale = SCALES[name]
    if records_per_domain is not None:
        # shrink the shards too, so a reduced run still spreads images over several tarballs
        scale = replace(scale, records_per_domain=records_per_domain,
                        images_per_shard=max(1, min(scale.images_per_shard,
                                                    records_per_domain * 7 // 3)))
    if eval_items is not None:
        scale = replace(scale, eval_items=eval_items)
    return scale
