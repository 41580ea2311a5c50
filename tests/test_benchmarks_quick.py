"""Every script of `make bench`, and the curation study's experiment scripts, run in their quick
mode (tiny sizes, the same functions and result JSON as the full run): a refactor that breaks a
benchmark fails here instead of at the next `make bench`."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
QUICK_RECORDS = 16 * 8          # the quick data sets: 16 records per domain, 8 domains


def positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def check_ingest(res: dict, out: Path) -> None:
    ours, floor, doubled = res["ours"], res["floor"], res["ours_doubled_array"]
    assert ours["records"] == floor["records"] == QUICK_RECORDS
    assert doubled["records"] == 2 * QUICK_RECORDS
    assert 0 < ours["samples"] <= ours["records"]
    for r in (ours, floor, doubled):
        assert positive(r["samples_per_s"]) and positive(r["peak_rss_mb"])
    assert positive(floor["with_image_check_samples_per_s"])
    assert all(positive(v) for v in res["ratios"].values()), res["ratios"]
    assert 1.9 < res["ratios"]["array_bytes_doubled_vs_single"] < 2.1


def check_json_array(res: dict, out: Path) -> None:
    assert res["records"] > 1000 and 3.5 < res["mb"] < 4.5
    assert res["split"]["good"] == res["split_and_parse"]["good"] == res["records"]
    for defect in ("missing_brace", "unterminated_string"):
        assert res[defect]["lost"] == 1 and res[defect]["bad"] == 1
    huge = res["huge_element"]
    assert huge["oversized"] == 1 and huge["good"] == 2 and huge["element_mb"] > 80
    for kind in ("read", "split", "split_and_parse"):
        assert positive(res[kind]["mb_per_s"])
    assert all(positive(v) for v in res["ratios"].values()), res["ratios"]


def check_semdedup(res: dict, out: Path) -> None:
    assert (res["n"], res["d"], res["k"]) == (20_000, 64, 20)
    assert res["planted_removable"] == 2000
    assert positive(res["pairwise_vs_sgemm_median"]) and positive(res["end_to_end_s"])
    for rnd in res["rate_rounds"]:
        assert positive(rnd["pairwise_gflops"]) and positive(rnd["sgemm_plain_gflops"])
    assert set(res["targets"]) == {"0.05", "0.10", "0.30"}
    for target, r in res["targets"].items():
        assert abs(r["achieved_fraction"] - float(target)) <= 0.001
        assert r["mask_removed"] == r["achieved_count"]
        assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1
    assert res["targets"]["0.05"]["precision"] > 0.9       # the closest pairs are planted copies
    assert res["dup_of_consistent"]
    assert out.with_suffix(".png").stat().st_size > 0


def check_embeddings(res: dict, out: Path) -> None:
    assert 0 < res["images"] < QUICK_RECORDS and res["rounds"] == 1 and res["batch_size"] == 16
    assert set(res["images_per_s"]) == {"overlapped", "serial", "model_same_threads", "model_all_cores",
                                        "decode_only"}
    assert all(positive(v) for v in res["images_per_s"].values()), res["images_per_s"]
    for k in ("ratio_overlapped_vs_model_same_threads", "ratio_overlapped_vs_model_all_cores",
              "ratio_serial_vs_model_all_cores", "bound_ratio_vs_model_same_threads"):
        assert positive(res[k]), k
    assert positive(res["decode_processes"]["ratio_vs_model_same_threads"])
    assert all(positive(v) for v in res["cpu_ms_per_image"].values()), res["cpu_ms_per_image"]
    real = res["realistic_model"]          # --quick: the one-layer smoke config, the code path only
    assert real["size"] == "smoke" and 0 < real["images"] <= 32 and real["model"]["random_init"]
    assert set(real["images_per_s"]) == {"overlapped", "serial", "model_same_threads", "model_all_cores"}
    assert all(positive(v) for v in real["images_per_s"].values()), real["images_per_s"]
    for k in ("ratio_overlapped_vs_model_same_threads", "ratio_overlapped_vs_model_all_cores",
              "ratio_serial_vs_model_all_cores", "bound_ratio_vs_model_same_threads"):
        assert positive(real[k]), k
    ppl = res["perplexity"]
    assert ppl["samples"] == 2 * 16 and 0 < ppl["scored"] <= ppl["samples"]     # general + language
    assert all(positive(v) for v in ppl["samples_per_s"].values()), ppl["samples_per_s"]
    assert positive(ppl["ratio_pipelined_vs_model_only"]) and positive(ppl["ratio_inline_vs_model_only"])
    quality = json.loads(out.with_name(f"{out.stem}_quality.json").read_text())
    assert quality["train"]["steps"] == 2 and quality["train"]["images"] == res["images"]
    for model in ("random", "trained"):
        for space in ("image", "language", "image_with_exact", "language_with_exact"):
            r = quality[model][space]
            assert 0 <= r["frac_dup_above_p99"] <= 1
            assert 0 <= r["removal"]["precision"] <= 1 and 0 <= r["removal"]["recall"] <= 1


def check_recompute(res: dict, out: Path) -> None:
    assert positive(res["cold_seconds"]) and positive(res["cold_embedder_training_seconds"])
    assert positive(res["recompute_seconds"]) and positive(res["ratio"])
    assert positive(res["ratio_vs_cold_without_training"])
    # the edit of semdedup10's threshold re-materializes its mask and its curated datasets, once
    curated = {f"curated_dataset[{d}|semdedup10]" for d in ("caption", "chart", "code_math", "detection",
                                                            "domain_specific", "general", "language", "ocr")}
    assert res["rematerialized"] == dict.fromkeys(curated | {"semdedup_mask[semdedup10]"}, 1)
    assert res["automation_ticks"][-1] == {}


def check_eval_backends(res: dict, out: Path) -> None:
    assert res["n"] == 8 and res["with_image"] == 6 and res["rounds"] == 1
    assert set(res["items_per_s"]) == {"1", "4"}
    assert all(positive(v) for v in res["items_per_s"].values())
    assert res["ratio_vs_batch_1"]["1"] == 1 and positive(res["ratio_vs_batch_1"]["4"])
    assert res["batched_equals_batch_1"] == {"1": True, "4": True}
    assert res["model"]["params"] > 0


def check_training(res: dict, out: Path) -> None:
    assert res["samples"] == 16 and not res["skipped"]
    assert set(res["modes"]) == {"packing_256", "packing_128", "packing_256_dense_mask", "padding"}
    assert res["attn_implementation"]["packing_256"] == "segments"
    assert res["attn_implementation"]["packing_256_dense_mask"] == "sdpa"
    # the same rows, the same data: the two attention paths learn the same (one epoch, same seed)
    dense, seg = res["modes"]["packing_256_dense_mask"], res["modes"]["packing_256"]
    assert seg["mean_loss"] == pytest.approx(dense["mean_loss"], rel=1e-4)
    assert seg["tokens_per_epoch"] == dense["tokens_per_epoch"]
    assert positive(res["ratio_segment_attention_over_dense_mask"])
    for m, a in res["modes"].items():
        assert positive(a["tokens_per_s"]) and a["steps_per_epoch"] > 0, m
        assert len(a["runs"]) == 2                        # A B C C B A, one round
        assert 0 <= a["padding_fraction"] < 1
    assert res["modes"]["packing_256"]["padding_fraction"] < res["modes"]["padding"]["padding_fraction"]
    assert res["headline"] == "packing_256" and positive(res["ratio_packing_over_padding"])
    assert set(res["ratios"]) == {"packing_256", "packing_128", "packing_256_dense_mask"} and all(positive(v) for v in res["ratios"].values())


def check_learnability(res: dict, out: Path) -> None:
    assert res["tokens"] > 0 and positive(res["tokens_per_s"])
    assert set(res["scores"]) == {"countbench", "chartqa"}
    for scores in res["scores"].values():
        assert set(scores) == {"init", "final", "final, images swapped"}
        assert all(0 <= s <= 1 for s in scores.values())


def check_count_probe(res: dict, out: Path) -> None:
    assert res["chance"] == round(1 / 9, 3) and res["settings"]["tower"] is None
    final = res["final"]
    assert final["epoch"] == 2 and math.isfinite(final["train_loss"])
    assert 0 <= final["accuracy"] <= final["within_one"] <= 1 and final["accuracy"] <= res["best_accuracy"] <= 1
    tower = res["tower_pretraining"]
    assert tower["scenes"] == 30 and [e["epoch"] for e in tower["curve"]] == [1]


def check_merge(res: dict, out: Path) -> None:
    assert res["identical"], "a Gray-code soup differs from the same subset merged from scratch"
    assert res["experts"] == 3 and res["soups"] == 7 and res["copied_tensors"] == 2
    assert res["ratio_ceiling_mean_subset_size"] == 12 / 7
    assert all(positive(v) for v in res["per_soup"].values())
    assert positive(res["ratio_scratch_over_gray"]) and positive(res["ratio_gray_over_pure"])


# script, extra arguments, whether it takes --work, the result check
SCRIPTS = [
    ("bench_ingest.py", [], True, check_ingest),
    ("bench_json_array.py", [], True, check_json_array),
    ("bench_semdedup.py", [], False, check_semdedup),
    ("bench_embeddings.py", ["--quality"], True, check_embeddings),
    ("bench_recompute.py", [], True, check_recompute),
    ("bench_eval_backends.py", [], True, check_eval_backends),
    ("bench_training.py", [], True, check_training),
    ("bench_merge.py", [], True, check_merge),
    ("learnability.py", [], False, check_learnability),
    ("count_probe.py", [], False, check_count_probe),
]


def check_ray(res: dict, out: Path) -> None:
    assert res["identical"], "Ray and in-process vectors differ"
    assert 0 < res["images"] < QUICK_RECORDS and res["shards"] >= 7        # one shard per image domain at least
    assert set(res["images_per_s"]) == {"in_process", "ray_1_worker", "ray_2_workers", "pure_model_1_thread"}
    assert all(positive(v) for v in res["images_per_s"].values()), res["images_per_s"]
    assert positive(res["ratio_ray_1_worker_vs_in_process"]) and positive(res["ratio_ray_2_workers_vs_1_worker"])


@pytest.mark.parametrize("script, args, takes_work, check", SCRIPTS, ids=[s[0].removesuffix(".py") for s in SCRIPTS])
def test_quick_mode(script, args, takes_work, check, tmp_path):
    run_quick(script, args, takes_work, check, tmp_path)


@pytest.mark.e2e                        # starts two Ray clusters: beside the other real-server tests
def test_quick_mode_bench_ray(tmp_path):
    run_quick("bench_ray.py", [], True, check_ray, tmp_path)


def run_quick(script, args, takes_work, check, tmp_path):
    out = tmp_path / "results" / "result.json"
    (tmp_path / "tmp").mkdir()
    cmd = [sys.executable, str(REPO / "benchmarks" / script), "--quick", "--out", str(out), *args]
    if takes_work:
        cmd += ["--work", str(tmp_path / "work")]
    # nothing of the caller's homes or settings: the scripts' temporary directories under tmp_path
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MM_", "DAGSTER_"))}
    env.update(HF_HUB_OFFLINE="1", TMPDIR=str(tmp_path / "tmp"), MM_HOME=str(tmp_path / "home"))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    check(json.loads(out.read_text()), out)


def test_learnability_training_pairs_every_benchmark():
    """The quick run trains on two benchmarks; the answer formats of the others (PixMo's points)
    are drawn here, one item each."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("learnability", REPO / "benchmarks" / "learnability.py")
    learnability = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(learnability)
    for bench in learnability.BENCHMARKS:
        [(prompt, answer, image)] = learnability.training_pairs(bench, 1)
        assert prompt and answer and image[:2] in (b"\xff\xd8", b"\x89P"), bench


def test_refusal_screen_refuses_that_share_of_records_and_leaves_questions_and_images():
    """The screening behind the `refusals` mix preset: every answer of a refused record is one
    refusal; questions, images and the other records are copied unchanged."""
    import importlib.util
    import io
    import tarfile
    import tempfile

    from mm_assets.sample_data.conversations import REFUSALS

    spec = importlib.util.spec_from_file_location("refusal_screen", REPO / "benchmarks" / "refusal_screen.py")
    screen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(screen)

    def add(tar, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    with tempfile.TemporaryDirectory() as tmp:
        shard = Path(tmp) / "shard-000000.tar"
        records = {}
        with tarfile.open(shard, "w") as tar:
            for k in range(400):
                records[f"{k:04d}"] = {"conversations": [
                    {"from": "human", "value": f"<image>\nHow many stars? {k}"}, {"from": "gpt", "value": str(k)},
                    {"from": "human", "value": "And squares?"}, {"from": "gpt", "value": "2"}]}
                add(tar, f"{k:04d}.json", json.dumps(records[f"{k:04d}"]).encode())
                add(tar, f"{k:04d}.png", b"\x89PNG" + bytes([k % 256]))
        [copy], n, refused = screen.refuse_shards([shard], Path(tmp) / "out", 0.5)
        assert n == 400 and 160 < refused < 240
        seen_refused = 0
        with tarfile.open(copy) as tar:
            for member in tar.getmembers():
                data = tar.extractfile(member).read()
                key, ext = member.name.split(".")
                if ext == "png":
                    assert data == b"\x89PNG" + bytes([int(key) % 256])
                    continue
                new, old = json.loads(data)["conversations"], records[key]["conversations"]
                assert [t["value"] for t in new[0::2]] == [t["value"] for t in old[0::2]]
                answers = {t["value"] for t in new[1::2]}
                if answers != {t["value"] for t in old[1::2]}:
                    seen_refused += 1
                    assert len(answers) == 1 and answers <= set(REFUSALS)
        assert seen_refused == refused
