"""The pipelined in-process paths: `prefetch_map`'s order and bound, and embeddings and perplexity
scores computed with workers equal byte for byte to the inline path at the same torch threads."""

from __future__ import annotations

import io
import json
import os
import random
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from mm_assets.prefetch import prefetch_map  # noqa: E402
from shard_files import write_shards  # noqa: E402


def test_prefetch_map_keeps_order_and_stays_inside_its_window():
    lock, running, seen_max = threading.Lock(), [0], [0]
    started: list[int] = []

    def work(i):
        with lock:
            started.append(i)
            running[0] += 1
            seen_max[0] = max(seen_max[0], running[0])
        time.sleep(random.Random(i).uniform(0, 0.004))      # finish out of order
        with lock:
            running[0] -= 1
        return i * i

    consumed = 0
    for i, r in enumerate(prefetch_map(work, range(40), workers=3, ahead=2)):
        assert r == i * i
        consumed += 1
        with lock:   # never more than workers + ahead items handed out beyond what was consumed
            assert len(started) <= consumed + 3 + 2 - 1
    assert consumed == 40 and 1 <= seen_max[0] <= 3
    assert list(prefetch_map(work, range(5), workers=0)) == [0, 1, 4, 9, 16]


def test_prefetch_map_raises_at_the_failing_item_and_stops_early():
    def work(i):
        if i == 4:
            raise KeyError(i)
        return i

    got = []
    with pytest.raises(KeyError):
        for r in prefetch_map(work, range(100), workers=2, ahead=1):
            got.append(r)
    assert got == [0, 1, 2, 3]

    calls = []
    it = prefetch_map(calls.append, range(1000), workers=2, ahead=2)
    next(it)
    it.close()
    assert len(calls) < 1000


def _image_bytes(rng: random.Random, i: int) -> bytes:
    from PIL import Image

    w, h = rng.randint(40, 300), rng.randint(40, 300)
    arr = np.random.default_rng(i).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG" if i % 3 == 0 else "JPEG", quality=85)
    return buf.getvalue()


@pytest.fixture(scope="module")
def tiny_embedder():
    from mm_assets.embeddings import build_tiny_siglip2

    return build_tiny_siglip2(seed=0)


def test_pipelined_embeddings_equal_the_inline_path_byte_for_byte(tiny_embedder):
    from mm_assets.embeddings import embed_images

    model, _, proc = tiny_embedder
    rng = random.Random(0)
    pairs = [(f"s{i:03d}", _image_bytes(rng, i)) for i in range(45)]
    ids0, v0 = embed_images(model, proc, pairs, batch_size=8, num_workers=0, num_threads=1)
    for kw in ({"num_workers": 2, "prefetch": 1}, {"num_workers": 3, "prefetch": 0},
               {"num_workers": 2, "decode_processes": True}):
        ids, v = embed_images(model, proc, iter(pairs), batch_size=8, num_threads=1, **kw)
        assert ids == ids0 and v.tobytes() == v0.tobytes(), kw


def test_decode_processes_need_the_fast_preprocessing(tiny_embedder):
    from mm_assets.embeddings import embed_images

    model, _, proc = tiny_embedder
    with pytest.raises(ValueError, match="fast SigLIP2"):
        embed_images(model, proc, [("a", _image_bytes(random.Random(1), 1))], num_workers=1,
                     decode_processes=True, fast_preprocess=False)


def test_pipelined_perplexity_scores_equal_the_inline_path(tmp_path):
    from mm_assets.perplexity.score import score_with_model
    from mm_assets.training.trainer import load_model_and_processor
    from mm_assets.vlm.tiny_llava import build_tiny_llava
    from mm_assets.vlm.tokenizer import train_bpe_tokenizer

    rng = random.Random(2)
    samples, texts = [], []
    for i in range(30):
        q, a = f"What is shown in picture {i}?", f"A pattern number {rng.randint(0, 99)}."
        texts += [q, a]
        rec = {"sample_id": f"p{i:03d}", "domain": "general",
               "conversations": [{"from": "human", "value": ("<image>\n" if i % 4 else "") + q},
                                 {"from": "gpt", "value": a}]}
        fields = {"json": json.dumps(rec).encode()}
        if i % 4:
            fields["png"] = _image_bytes(rng, 3 * i)        # a PNG (i multiple of 3 in _image_bytes)
        samples.append((f"p{i:03d}", fields))
    shards = write_shards(tmp_path / "pool", samples, per_shard=11)
    model_dir = build_tiny_llava(tmp_path / "model", train_bpe_tokenizer(texts, vocab_size=300), seed=0)
    model, processor = load_model_and_processor(model_dir)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        inline = score_with_model(model, processor, shards, chunk_size=7, num_workers=0)
        piped = score_with_model(model, processor, shards, chunk_size=7, num_workers=1, prefetch=2)
    finally:
        torch.set_num_threads(previous)
    assert inline.height == 30 and inline["nll"].null_count() == 0
    assert piped.equals(inline)
    with pytest.raises(ValueError):
        score_with_model(model, processor, shards, num_workers=2)
