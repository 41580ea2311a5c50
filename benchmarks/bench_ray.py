"""`make bench` part: the embeddings step mapped over shards on a local Ray cluster, against the
same map in process and against the pure-model rate, all in one run.

Data: the demo-scale look-alike data ingested into WebDataset shards (bench_embeddings' cache),
image domains only. Every variant embeds every shard with the same per-shard settings: batch 64,
decoding inline and a one-thread forward pass, so a shard task keeps one core busy (the decode
overlap that uses a second core is bench_embeddings' subject):

1. in process: `map_shards(embed_shard, ...)` in this process, one shard after the other;
2. Ray, 1 worker: a `ray start --head --num-cpus=1` cluster on loopback, one task per shard;
3. Ray, 2 workers: a `--num-cpus=2` cluster (two shards at once). Two clusters, because on one
   cluster the leases of the first variant's task shape kept the second's tasks from overlapping;
4. the pure-model rate: forward passes only, one thread, on the same images decoded and
   preprocessed beforehand into the same batches.

Reports images/s and the ratios: Ray 1 worker ÷ in process (the Ray path's overhead), Ray 2
workers ÷ Ray 1 worker (scaling with workers: one core each), and each ÷ the pure-model rate.
Checks that every variant's vectors are byte identical. Writes `.bench/results/ray.json`.
`--quick`: 16 records per domain (what the suite runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(Path(__file__).resolve().parent)]

import torch  # noqa: E402

from bench_embeddings import prepare_data  # noqa: E402
from mm_assets.embeddings import build_tiny_siglip2, iter_shard_images  # noqa: E402
from mm_assets.embeddings.by_shard import EmbedShardTask, embed_shard  # noqa: E402
from mm_assets.embeddings.inference import chunked, decode_and_preprocess, image_features, torch_threads  # noqa: E402
from mm_assets.embeddings.model import save_embedder  # noqa: E402
from mm_assets.embeddings.preprocess import make_preprocess  # noqa: E402
from mm_assets.shard_map import RayPlacement, map_shards  # noqa: E402
from mm_assets.storage import Storage  # noqa: E402

BENCH = REPO / ".bench" / "embeddings"
RESULTS = REPO / ".bench" / "results"
QUICK = {"records_per_domain": 16, "work": str(BENCH / "quick"), "out": str(RESULTS / "ray_quick.json")}
BATCH = 64


def shard_tasks(work: Path, info: dict, embedder_dir: Path, out_root: str) -> list[EmbedShardTask]:
    ingest = Storage(str(next(Path(p) for ps in info["shards"].values() for p in ps).parents[2]))
    tasks = []
    for domain, shards in sorted(info["shards"].items()):
        if domain == "language":
            continue
        for uri in shards:
            tasks.append(EmbedShardTask(storage_root=ingest.root, storage_options={}, raw_root=f"raw/{domain}",
                                        tar=Path(uri).name, out_root=f"{out_root}/{domain}",
                                        embedder={"root": None, "model": str(embedder_dir), "version": "bench"},
                                        batch_size=BATCH, decode_workers=0, torch_threads=1))
    return tasks


def run_variant(tasks: list[EmbedShardTask], placement: RayPlacement | None) -> tuple[float, int, dict]:
    """(seconds, rows, {shard: npy sha256}) of embedding every shard from scratch."""
    st = Storage(tasks[0].storage_root)
    for root in {t.out_root.split("/")[0] for t in tasks}:
        st.delete(root)
    started = time.perf_counter()
    results = map_shards(embed_shard, tasks, shard_names=[f"{t.out_root}/{t.shard}" for t in tasks], ray=placement)
    seconds = time.perf_counter() - started
    assert all(r.computed for r in results)
    return seconds, sum(r.record["rows"] for r in results), {
        f"{t.out_root.split('/')[-1]}/{t.shard}": r.record["npy_sha256"] for t, r in zip(tasks, results)}


def pure_model_rate(embedder_dir: Path, tasks: list[EmbedShardTask]) -> float:
    from mm_assets.embeddings.model import load_embedder

    model, _, proc = load_embedder(str(embedder_dir))
    st = Storage(tasks[0].storage_root)
    pairs = list(iter_shard_images([st.child(t.raw_root).uri(t.tar) for t in tasks]))
    prep = make_preprocess(proc)
    batches = [decode_and_preprocess(prep, [b for _, b in chunk]) for chunk in chunked(pairs, BATCH)]
    with torch_threads(1), torch.inference_mode():
        image_features(model, batches[0])
        started = time.perf_counter()
        for b in batches:
            image_features(model, b)
        return len(pairs) / (time.perf_counter() - started)


def on_ray(workers: int, tasks: list[EmbedShardTask]) -> tuple[float, int, dict]:
    """run_variant on a cluster of `workers` CPU slots, one slot per task."""
    import ray

    from servers import ray_cluster

    placement = RayPlacement(num_cpus=1, env_vars={"HF_HUB_OFFLINE": "1"})
    with ray_cluster(num_cpus=workers) as cluster:
        ray.init(address=cluster.address, log_to_driver=False)
        try:
            # warm-up: every worker imports torch and loads the embedder once, as a long job would
            map_shards(embed_shard, tasks[:workers], shard_names=[t.shard for t in tasks[:workers]], ray=placement)
            return run_variant(tasks, placement)
        finally:
            ray.shutdown()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (what the test suite runs)")
    ap.add_argument("--records-per-domain", type=int, default=None, help="default: the demo scale's")
    ap.add_argument("--work", default=str(BENCH), help="where the data is generated and cached")
    ap.add_argument("--out", default=str(RESULTS / "ray.json"))
    if ap.parse_known_args()[0].quick:
        ap.set_defaults(**QUICK)
    args = ap.parse_args()
    work = Path(args.work)
    info = prepare_data(work, 0, args.records_per_domain)
    embedder_dir = work / "ray_bench_embedder"
    if not embedder_dir.exists():
        save_embedder(*build_tiny_siglip2(seed=0), embedder_dir)

    tasks = shard_tasks(work, info, embedder_dir, "ray_bench_out")
    map_shards(embed_shard, tasks[:1], shard_names=["warm-up"])          # in process: load the model once
    seconds = {}
    in_process = run_variant(tasks, None)
    ray_1, ray_2 = on_ray(1, tasks), on_ray(2, tasks)
    model = pure_model_rate(embedder_dir, tasks)
    shutil.rmtree(Path(tasks[0].storage_root) / "ray_bench_out", ignore_errors=True)
    rows = in_process[1]
    for name, (s, n, _) in {"in_process": in_process, "ray_1_worker": ray_1, "ray_2_workers": ray_2}.items():
        assert n == rows
        seconds[name] = s
    rate = {k: rows / s for k, s in seconds.items()}
    rate["pure_model_1_thread"] = model
    res = {"images": rows, "shards": len(tasks), "batch_size": BATCH, "images_per_s": rate,
           "identical": in_process[2] == ray_1[2] == ray_2[2],
           "ratio_ray_1_worker_vs_in_process": rate["ray_1_worker"] / rate["in_process"],
           "ratio_ray_2_workers_vs_1_worker": rate["ray_2_workers"] / rate["ray_1_worker"],
           "ratio_vs_pure_model": {k: rate[k] / model for k in ("in_process", "ray_1_worker", "ray_2_workers")},
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg": os.getloadavg()}}
    print(f"embeddings of {rows} images in {len(tasks)} shards "
          f"(batch {BATCH}, inline decode + 1 torch thread per shard):")
    for k in ("in_process", "ray_1_worker", "ray_2_workers", "pure_model_1_thread"):
        print(f"  {k:22s} {rate[k]:7.0f} img/s")
    print(f"  Ray 1 worker / in process: {res['ratio_ray_1_worker_vs_in_process']:.2f}   "
          f"Ray 2 workers / 1 worker: {res['ratio_ray_2_workers_vs_1_worker']:.2f}   "
          f"byte-identical vectors: {res['identical']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    return 0 if res["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
