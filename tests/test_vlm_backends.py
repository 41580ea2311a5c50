"""The VLM (tiny LLaVA behind HF interfaces), its tokenizer, and the generation back ends."""

import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from mm_assets.evaluation.backends import GenerationRequest, HFBackend, load_backend  # noqa: E402
from mm_assets.evaluation.backends.base import GenerationBackend  # noqa: E402
from mm_assets.vlm import (BOS, EOS, IMAGE, PAD, TinyLlavaSpec, build_tiny_llava, render_chat,  # noqa: E402
                           train_bpe_tokenizer, user_message)

CORPUS = [
    "What is the value of the red bar in the chart?", "How many dogs are in the picture? 3",
    "Describe the image in one sentence.", "The total is 42.5 and the answer is yes.",
    "Which colour is the largest slice of the pie chart?", "Read the text in the image: HELLO WORLD",
] * 4

PROMPTS = [
    "What?",
    "How many red bars are in the chart shown in the picture, counting every one of them carefully?",
    "Describe the image.",
    "What is the value of the red bar? Answer with a single number.",
    "a b c d e f g h i j k l m n o p q r s t",
    "Read the text.",
]


def _image(seed: int, h: int, w: int, mode: str = "RGB") -> Image.Image:
    rs = np.random.RandomState(seed)
    return Image.fromarray(rs.randint(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)


def _requests():
    images = [_image(i, 24 + 11 * i, 40 + 7 * (5 - i), "RGBA" if i == 2 else "L" if i == 4 else "RGB")
              for i in range(len(PROMPTS))]
    with_image = [GenerationRequest(p, im) for p, im in zip(PROMPTS, images)]
    text_only = [GenerationRequest(p) for p in PROMPTS]
    # interleaved, so a batch of the input order mixes both kinds
    return [r for pair in zip(with_image, text_only) for r in pair]


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe_tokenizer(CORPUS, vocab_size=512)


@pytest.fixture(scope="module")
def spec():
    return TinyLlavaSpec(image_size=64)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tokenizer, spec):
    return build_tiny_llava(tmp_path_factory.mktemp("tiny_llava"), tokenizer, seed=0, spec=spec)


@pytest.fixture(scope="module")
def loaded(checkpoint):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    processor = AutoProcessor.from_pretrained(checkpoint, trust_remote_code=False, local_files_only=True)
    model = LlavaForConditionalGeneration.from_pretrained(checkpoint, trust_remote_code=False,
                                                          local_files_only=True).eval()
    return model, processor


@pytest.fixture(scope="module")
def backend(checkpoint):
    b = HFBackend(str(checkpoint), batch_size=8)
    yield b
    b.close()


# ----------------------------------------------------------------------------- tokenizer


def test_tokenizer_special_tokens_and_round_trip(tokenizer):
    assert [tokenizer.convert_tokens_to_ids(t) for t in (PAD, BOS, EOS, IMAGE)] == [0, 1, 2, 3]
    assert (tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token) == (PAD, BOS, EOS)
    assert len(tokenizer) <= 512
    for text in ["What is the value of the red bar?", "  two  spaces\nnew line\ttab", "ünïcödé — 数字 42.5%",
                 "unseen zyxwvut QRSTU ~!@#$"]:
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.unk_token_id is None or tokenizer.unk_token_id not in ids     # byte level: no <unk>
        assert tokenizer.decode(ids) == text
    # <image> is one token inside text, and is dropped by skip_special_tokens
    ids = tokenizer("look: <image>\nnow")["input_ids"]
    assert ids.count(3) == 1
    assert tokenizer.decode(ids, skip_special_tokens=True) == "look: \nnow"
    # plain text gets no BOS/EOS from the post-processor (they come from the chat template)
    assert 1 not in tokenizer("hello")["input_ids"] and 2 not in tokenizer("hello")["input_ids"]


def test_tokenizer_is_deterministic():
    a, b = train_bpe_tokenizer(CORPUS, vocab_size=400), train_bpe_tokenizer(CORPUS, vocab_size=400)
    assert a.get_vocab() == b.get_vocab()
    assert a("How many dogs?")["input_ids"] == b("How many dogs?")["input_ids"]


def test_chat_template_renders_llava_transcript(tokenizer):
    chat = [{"role": "user", "content": "<image>\nWhat is it?"}, {"role": "assistant", "content": "A dog."},
            {"role": "user", "content": "How many?"}]
    assert render_chat(tokenizer, chat[:2]) == "<s>USER: <image>\nWhat is it? ASSISTANT: A dog.</s>"
    assert render_chat(tokenizer, chat, add_generation_prompt=True) == \
        "<s>USER: <image>\nWhat is it? ASSISTANT: A dog.</s>USER: How many? ASSISTANT:"
    # the processor (list) form renders the same text
    listed = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]}]
    assert render_chat(tokenizer, listed, True) == render_chat(tokenizer, chat[:1], True)
    assert render_chat(tokenizer, user_message("Hi", with_image=False), True) == "<s>USER: Hi ASSISTANT:"


def test_bos_exactly_once_for_a_rendered_chat(tokenizer, loaded, backend):
    _, processor = loaded
    chat = [{"role": "user", "content": "<image>\nWhat is the value?"}, {"role": "assistant", "content": "42"}]
    rendered = render_chat(tokenizer, chat)
    encodings = {
        "tokenizer(rendered)": tokenizer(rendered)["input_ids"],
        "tokenizer(rendered, add_special_tokens=False)": tokenizer(rendered, add_special_tokens=False)["input_ids"],
        "tokenizer.apply_chat_template(tokenize=True)": tokenizer.apply_chat_template(chat, tokenize=True)["input_ids"],
    }
    image = _image(0, 40, 50)
    msgs = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "What?"}]}]
    encodings["processor.apply_chat_template(tokenize=True)"] = processor.apply_chat_template(
        msgs, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")["input_ids"][0].tolist()
    text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    encodings["processor(text=rendered)"] = processor(text=[text], images=[image], return_tensors="pt")["input_ids"][0].tolist()
    enc = backend.encode([GenerationRequest("What?", image), GenerationRequest("A much longer question here?", image)])
    for row, mask in zip(enc["input_ids"].tolist(), enc["attention_mask"].tolist()):
        encodings["HFBackend.encode (left-padded)"] = [t for t, m in zip(row, mask) if m]
    for how, ids in encodings.items():
        assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id, how
    assert encodings["tokenizer(rendered)"][-1] == tokenizer.eos_token_id
    assert encodings["tokenizer(rendered)"].count(tokenizer.eos_token_id) == 1


def test_generation_prompt_is_a_token_prefix_and_assistant_mask(tokenizer):
    chat = [{"role": "user", "content": "<image>\nHow many dogs?"}, {"role": "assistant", "content": "3 dogs"}]
    full = tokenizer.apply_chat_template(chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    prompt = tokenizer.apply_chat_template(chat[:1], tokenize=True, add_generation_prompt=True)["input_ids"]
    assert full["input_ids"][:len(prompt)] == prompt
    answer = [t for t, m in zip(full["input_ids"], full["assistant_masks"]) if m]
    assert tokenizer.decode(answer).endswith("3 dogs</s>")
    assert sum(full["assistant_masks"][:len(prompt) - 2]) == 0


# ----------------------------------------------------------------------------- tiny LLaVA


def test_checkpoint_saves_and_reloads_offline(checkpoint, loaded, spec):
    names = set(os.listdir(checkpoint))
    assert "model.safetensors" in names and not any(n.endswith(".bin") for n in names)
    assert {"config.json", "processor_config.json", "tokenizer.json", "generation_config.json"} <= names
    model, processor = loaded
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert type(processor).__name__ == "LlavaProcessor"
    assert type(model.model.vision_tower).__name__ == "SiglipVisionModel"
    assert type(model.model.language_model).__name__ == "LlamaModel"
    cfg = model.config
    assert cfg.image_token_id == processor.tokenizer.convert_tokens_to_ids(IMAGE) == processor.image_token_id
    assert cfg.vision_feature_select_strategy == processor.vision_feature_select_strategy == "full"
    assert processor.patch_size == cfg.vision_config.patch_size and processor.num_additional_image_tokens == 0
    assert cfg.text_config.vocab_size == len(processor.tokenizer)
    assert processor.tokenizer.chat_template is not None
    text = processor.apply_chat_template(user_message("What is in the image?", True), add_generation_prompt=True)
    inputs = processor(text=[text], images=[_image(1, 50, 80)], return_tensors="pt")
    assert tuple(inputs["pixel_values"].shape) == (1, 3, spec.image_size, spec.image_size)
    with torch.inference_mode():
        out = model(**inputs)
    assert out.logits.shape == (1, inputs["input_ids"].shape[1], len(processor.tokenizer))
    assert torch.isfinite(out.logits).all()


def test_processor_expands_image_to_the_number_of_image_features(loaded, spec):
    model, processor = loaded
    for h, w in [(64, 64), (30, 90), (200, 17)]:
        text = processor.apply_chat_template(user_message("Count.", True), add_generation_prompt=True)
        inputs = processor(text=[text], images=[_image(h, h, w)], return_tensors="pt")
        n_tokens = int((inputs["input_ids"] == model.config.image_token_id).sum())
        with torch.inference_mode():
            feats = model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
        assert n_tokens == feats[0].shape[0] == spec.num_image_tokens == (64 // 16) ** 2
        assert feats[0].shape[1] == model.config.text_config.hidden_size
    # the count serving stacks ask the processor for (reads image_processor.crop_size)
    assert processor._get_num_multimodal_tokens(image_sizes=[[30, 90]]).num_image_tokens == [spec.num_image_tokens]


def test_build_is_deterministic_for_a_seed(tmp_path, checkpoint, tokenizer, spec):
    from safetensors.torch import load_file

    ref = load_file(checkpoint / "model.safetensors")
    same = load_file(build_tiny_llava(tmp_path / "same", tokenizer, seed=0, spec=spec) / "model.safetensors")
    other = load_file(build_tiny_llava(tmp_path / "other", tokenizer, seed=1, spec=spec) / "model.safetensors")
    assert ref.keys() == same.keys() == other.keys()
    assert all(torch.equal(ref[k], same[k]) for k in ref)
    assert not all(torch.equal(ref[k], other[k]) for k in ref)


def test_vision_tower_from_siglip2_reproduces_the_embedder(tmp_path, tokenizer):
    from mm_assets.embeddings.model import build_tiny_siglip2, make_image_processor as siglip2_processor
    from mm_assets.vlm import make_image_processor, vision_tower_from_siglip2

    embedder, _, proc2 = build_tiny_siglip2(seed=0)            # patch 16, 8x8 position grid, hidden 128
    image = _image(7, 128, 128)
    size = 128                                                  # 8x8 patches = the embedder's budget
    tower = vision_tower_from_siglip2(embedder, size)
    pixels = make_image_processor(size)(images=[image], return_tensors="pt")["pixel_values"]
    p2 = siglip2_processor(16, 64)(images=[image], return_tensors="pt")
    with torch.no_grad():
        a = tower(pixel_values=pixels).last_hidden_state
        b = embedder.vision_model(pixel_values=p2["pixel_values"], pixel_attention_mask=p2["pixel_attention_mask"],
                                  spatial_shapes=p2["spatial_shapes"]).last_hidden_state
    assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()
    # at another fixed resolution the resized position grid still matches SigLIP2 on the same pixels
    tower64 = vision_tower_from_siglip2(embedder, 64)
    x = torch.randn(1, 3, 64, 64)
    patches = x.reshape(1, 3, 4, 16, 4, 16).permute(0, 2, 4, 3, 5, 1).reshape(1, 16, 16 * 16 * 3)
    with torch.no_grad():
        a = tower64(pixel_values=x).last_hidden_state
        b = embedder.vision_model(pixel_values=patches, pixel_attention_mask=torch.ones(1, 16, dtype=torch.long),
                                  spatial_shapes=torch.tensor([[4, 4]])).last_hidden_state
    assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()
    # and a LLaVA built on it carries those weights
    from mm_assets.vlm import build_tiny_llava_model
    llava = build_tiny_llava_model(tokenizer, seed=0, spec=TinyLlavaSpec(image_size=64), vision_from=embedder)
    assert llava.config.vision_config.hidden_size == 128
    assert torch.equal(llava.model.vision_tower.embeddings.patch_embedding.weight,
                       tower64.embeddings.patch_embedding.weight)


# ----------------------------------------------------------------------------- HF back end


def test_hf_backend_generates_strings(backend):
    assert isinstance(backend, GenerationBackend)
    assert backend.name == "hf"
    reqs = _requests()
    out = backend.generate(reqs, max_new_tokens=6)
    assert len(out) == len(reqs) and all(isinstance(o, str) for o in out)
    assert all("<s>" not in o and "</s>" not in o and "<pad>" not in o for o in out)
    assert backend.generate([], max_new_tokens=4) == []


def test_batched_left_padded_generation_equals_one_by_one(backend):
    reqs = _requests()
    batched = backend.generate(reqs, max_new_tokens=10)
    one_by_one = [backend.generate([r], max_new_tokens=10)[0] for r in reqs]
    assert all(one_by_one) and len(set(one_by_one)) > len(reqs) // 2      # not trivially equal
    assert batched == one_by_one
    backend.batch_size = 3                                       # different batch compositions
    try:
        assert backend.generate(reqs[::-1], max_new_tokens=10) == one_by_one[::-1]
    finally:
        backend.batch_size = 8
    # the prompts really are of different lengths, so batches really were padded
    enc = backend.encode([r for r in reqs if r.image is None])
    assert (enc["attention_mask"] == 0).any() and (enc["attention_mask"][:, -1] == 1).all()


def test_generation_is_deterministic_across_loads(checkpoint, backend):
    reqs = _requests()[:6]
    other = load_backend("hf", str(checkpoint), batch_size=4)
    try:
        assert other.generate(reqs, max_new_tokens=8) == backend.generate(reqs, max_new_tokens=8)
    finally:
        other.close()
    with pytest.raises(RuntimeError, match="closed"):
        other.generate(reqs, max_new_tokens=2)


def test_request_and_loader_validation():
    with pytest.raises(ValueError, match="<image>"):
        GenerationRequest("<image>\nWhat is it?", None)
    with pytest.raises(ValueError, match="unknown generation back end"):
        load_backend("onnx", "somewhere")


# ----------------------------------------------------------------------------- vLLM back end


def test_vllm_backend_without_vllm_says_install_the_gpu_extra(monkeypatch, checkpoint):
    from mm_assets.evaluation.backends.vllm_backend import VLLMBackend

    monkeypatch.setitem(sys.modules, "vllm", None)               # import vllm -> ImportError
    with pytest.raises(RuntimeError, match="gpu extra"):
        VLLMBackend(str(checkpoint))
    with pytest.raises(RuntimeError, match="gpu extra"):            # as the eval_scores asset calls it
        load_backend("vllm", str(checkpoint), batch_size=16, device="cpu")


@pytest.fixture(scope="module")
def vllm_backend(checkpoint):
    pytest.importorskip("vllm")
    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a CUDA GPU")
    b = load_backend("vllm", str(checkpoint), batch_size=16, device="cuda", dtype="float32",
                     gpu_memory_utilization=0.3, enforce_eager=True, max_model_len=512)
    yield b
    b.close()


def test_vllm_backend_generates_deterministically(vllm_backend):
    reqs = _requests()
    a = vllm_backend.generate(reqs, max_new_tokens=8)
    assert len(a) == len(reqs) and all(isinstance(o, str) for o in a)
    assert vllm_backend.generate(reqs, max_new_tokens=8) == a


def test_vllm_backend_matches_hf_on_the_same_gpu(vllm_backend, checkpoint):
    reqs = _requests()
    hf = HFBackend(str(checkpoint), batch_size=4, device="cuda", dtype=torch.float32)
    try:
        assert vllm_backend.generate(reqs, max_new_tokens=8) == hf.generate(reqs, max_new_tokens=8)
    finally:
        hf.close()
