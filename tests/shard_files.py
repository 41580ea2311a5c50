"""Test helper: write (key, fields) samples into numbered WebDataset shards."""

from pathlib import Path


def write_shards(directory: Path, samples, per_shard: int) -> list[Path]:
    from mm_assets.webdataset_io import write_shard

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for j in range(0, len(samples), per_shard):
        p = directory / f"shard-{j // per_shard:06d}.tar"
        with open(p, "wb") as f:
            write_shard(f, samples[j:j + per_shard])
        paths.append(p)
    return paths
