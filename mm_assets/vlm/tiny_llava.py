"""The trained VLM: a real ``transformers.LlavaForConditionalGeneration`` built tiny and locally.

:func:`build_tiny_llava` writes a randomly initialised, seed-deterministic LLaVA to a directory
with ``save_pretrained`` (safetensors, config, generation config, tokenizer, image processor,
processor config, chat template), so that ``AutoProcessor.from_pretrained(dir)`` and
``LlavaForConditionalGeneration.from_pretrained(dir)`` load it offline with
``trust_remote_code`` off, exactly like a real checkpoint (``llava-hf/llava-1.5-7b-hf``).

Parts:

* vision tower: ``SiglipVisionModel`` (SigLIP v1's tower: fixed square resolution, Conv2d
  patch embedding, no CLS token, attention-pooling head off). Every patch is an image
  feature: ``vision_feature_select_strategy="full"`` (``"default"`` drops the first token,
  which is right for CLIP's CLS and wrong for SigLIP), features from ``vision_feature_layer``
  (default -1: the last encoder layer's output, before ``post_layernorm``);
* projector: LLaVA's two-layer GELU MLP;
* language model: ``LlamaModel`` + LM head, vocabulary = the tokenizer;
* processor: ``LlavaProcessor`` = ``SiglipImageProcessorPil`` (resize to
  ``image_size`` x ``image_size``, rescale, normalise with mean = std = 0.5) + the tokenizer of
  :mod:`mm_assets.vlm.tokenizer`, with ``patch_size``, ``num_additional_image_tokens=0`` and
  ``vision_feature_select_strategy="full"``, so one ``<image>`` expands to
  ``(image_size // patch_size) ** 2`` image tokens, the number of features the tower gives.

Putting the embedder's SigLIP2 vision weights here (issue #6)
-------------------------------------------------------------
SigLIP2 (NaFlex) and SigLIP v1 share the encoder layer by layer (same parameter names and
shapes, ``post_layernorm`` and ``head`` too); they differ only in the embeddings:

* patch embedding: SigLIP2 applies an ``nn.Linear(C*p*p -> D)`` to patches its image processor
  flattened in ``(p_row, p_col, channel)`` order; SigLIP v1 applies an
  ``nn.Conv2d(C -> D, kernel=stride=p)``. A Conv2d with kernel = stride = p *is* that Linear
  on non-overlapping patches, so a pure reshape converts one into the other, exactly:
  ``conv.weight = linear.weight.reshape(D, p, p, C).permute(0, 3, 1, 2)``, same bias.
* position embedding: SigLIP2 stores a ``g x g`` grid (``g = sqrt(num_patches)``) and, per
  image, resizes it bilinearly (antialiased) to the image's patch grid; SigLIP v1 stores one
  embedding per patch of its fixed grid. Resizing SigLIP2's grid once to the fixed
  ``(image_size/p) x (image_size/p)`` grid with SigLIP2's own resize gives v1 embeddings that
  reproduce SigLIP2 exactly for an image processed at that grid.

:func:`vision_tower_from_siglip2` / :func:`siglip_state_dict_from_siglip2` do this (tested:
same hidden states as the SigLIP2 tower on the same pixels, to float rounding), and
``build_tiny_llava(out_dir, tokenizer, vision_from=embedder)`` builds the LLaVA around the
converted tower (its sizes then come from the embedder; projector and LM stay random). What stays different is preprocessing, not weights: SigLIP2's NaFlex
processor keeps the aspect ratio within a patch budget, the v1 processor squashes every image
to the fixed square; pick ``image_size`` so that ``(image_size/p)**2`` is near the
embedder's ``max_num_patches``, and use the same resample filter and normalisation (both
default to bilinear, mean = std = 0.5 here).

No Dagster import here.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .tokenizer import CHAT_TEMPLATE, IMAGE

IMAGE_MEAN = [0.5, 0.5, 0.5]
IMAGE_STD = [0.5, 0.5, 0.5]


@dataclass(frozen=True)
class TinyLlavaSpec:
    """Sizes of the tiny LLaVA. Head dims are 32 (vLLM's attention kernels want >= 32)."""
    image_size: int = 64
    patch_size: int = 16
    vision_hidden_size: int = 64
    vision_intermediate_size: int = 128
    vision_layers: int = 2
    vision_heads: int = 2
    vision_feature_layer: int = -1
    text_hidden_size: int = 128
    text_intermediate_size: int = 256
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2
    max_position_embeddings: int = 2048
    rope_theta: float = 10000.0
    # Larger than the usual 0.02 so the random model's next-token distribution is peaked:
    # greedy decoding then has clear winners and is stable across batch compositions.
    initializer_range: float = 0.1

    @property
    def num_image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def _silence_transformers_warnings():
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def make_image_processor(image_size: int = 64):
    """SigLIP's image processor (PIL backend, no torchvision needed), every parameter explicit.

    ``crop_size`` is metadata only (SigLIP never center-crops): ``LlavaProcessor.
    _get_num_multimodal_tokens`` reads ``image_processor.crop_size`` to count image tokens
    (used by serving stacks, e.g. vLLM's transformers back end) and fails without it.
    """
    from transformers.image_utils import PILImageResampling
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    square = {"height": image_size, "width": image_size}
    return SiglipImageProcessorPil(
        do_resize=True, size=square, crop_size=square, resample=PILImageResampling.BILINEAR,
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=IMAGE_MEAN, image_std=IMAGE_STD,
        do_convert_rgb=True)


def make_processor(tokenizer, image_processor, spec: TinyLlavaSpec, patch_size: int | None = None):
    from transformers import LlavaProcessor

    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer,
                          patch_size=patch_size or spec.patch_size,
                          vision_feature_select_strategy="full", num_additional_image_tokens=0,
                          image_token=IMAGE, chat_template=CHAT_TEMPLATE)


def tiny_llava_config(spec: TinyLlavaSpec, tokenizer, vision_config=None):
    """``LlavaConfig`` for `spec`; `vision_config` (a ``SiglipVisionConfig``) overrides the tower."""
    from transformers import LlamaConfig, LlavaConfig, SiglipVisionConfig

    if vision_config is None:
        vision_config = SiglipVisionConfig(
            hidden_size=spec.vision_hidden_size, intermediate_size=spec.vision_intermediate_size,
            num_hidden_layers=spec.vision_layers, num_attention_heads=spec.vision_heads, num_channels=3,
            image_size=spec.image_size, patch_size=spec.patch_size, hidden_act="gelu_pytorch_tanh",
            layer_norm_eps=1e-6, attention_dropout=0.0, vision_use_head=False)
    text_config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=spec.text_hidden_size,
        intermediate_size=spec.text_intermediate_size, num_hidden_layers=spec.text_layers,
        num_attention_heads=spec.text_heads, num_key_value_heads=spec.text_kv_heads,
        max_position_embeddings=spec.max_position_embeddings, rope_theta=spec.rope_theta,
        initializer_range=spec.initializer_range, rms_norm_eps=1e-6, hidden_act="silu",
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    image_tokens = (vision_config.image_size // vision_config.patch_size) ** 2
    return LlavaConfig(
        vision_config=vision_config, text_config=text_config,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE), image_seq_length=image_tokens,
        projector_hidden_act="gelu", vision_feature_select_strategy="full",
        vision_feature_layer=spec.vision_feature_layer, multimodal_projector_bias=True,
        tie_word_embeddings=False, initializer_range=spec.initializer_range)


def build_tiny_llava_model(tokenizer, seed: int = 0, spec: TinyLlavaSpec | None = None, vision_from=None):
    """The randomly initialised model, in memory (eval mode). Bit-identical for the same inputs;
    the global torch RNG is left untouched.

    `vision_from`: a SigLIP2 model (e.g. the embedder); its vision tower, converted by
    :func:`siglip_state_dict_from_siglip2` at ``spec.image_size``, replaces the random one (the
    tower's sizes then come from it, not from `spec`). Projector and language model stay random.
    """
    from transformers import GenerationConfig, LlavaForConditionalGeneration

    _silence_transformers_warnings()
    spec = spec or TinyLlavaSpec()
    vision_config = None
    if vision_from is not None:
        vision_config = siglip_vision_config_from_siglip2(_siglip2_vision_parts(vision_from)[1], spec.image_size)
    config = tiny_llava_config(spec, tokenizer, vision_config=vision_config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(config)
    if vision_from is not None:
        model.model.vision_tower.load_state_dict(siglip_state_dict_from_siglip2(vision_from, spec.image_size),
                                                 strict=True)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, do_sample=False, max_new_tokens=32)
    model.config.tiny_llava_spec = asdict(spec)
    model.eval()
    return model


def build_tiny_llava(out_dir: str | os.PathLike, tokenizer, seed: int = 0, image_size: int = 64,
                     spec: TinyLlavaSpec | None = None, vision_from=None, prepare_tower=None) -> Path:
    """Build the tiny LLaVA for `tokenizer` and save model + processor into `out_dir`.

    `tokenizer` is :func:`mm_assets.vlm.tokenizer.train_bpe_tokenizer`'s (it must know
    ``<image>``, ``<s>``, ``</s>``, ``<pad>``). `image_size` is the tower's fixed resolution
    (ignored when `spec` is given). `vision_from`: see :func:`build_tiny_llava_model`.
    `prepare_tower`: called with the vision tower before saving (e.g. to pre-train it).
    Returns `out_dir` as a ``Path``.
    """
    spec = spec or TinyLlavaSpec(image_size=image_size)
    if spec.image_size % spec.patch_size:
        raise ValueError(f"image_size {spec.image_size} is not a multiple of patch_size {spec.patch_size}")
    model = build_tiny_llava_model(tokenizer, seed=seed, spec=spec, vision_from=vision_from)
    if prepare_tower is not None:
        prepare_tower(model.model.vision_tower)
    patch = model.config.vision_config.patch_size
    processor = make_processor(tokenizer, make_image_processor(spec.image_size), spec, patch_size=patch)
    return save_llava(model, processor, out_dir)


def save_llava(model, processor, out_dir: str | os.PathLike) -> Path:
    """``save_pretrained`` of model (safetensors) and processor into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out


def load_llava(path_or_id: str | os.PathLike, dtype: torch.dtype = torch.float32, device: str = "cpu",
               local_files_only: bool | None = None):
    """``(model, processor)`` from a checkpoint, model in eval mode, ``trust_remote_code=False``."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    _silence_transformers_warnings()
    p = str(path_or_id)
    if local_files_only is None:
        local_files_only = offline() or Path(p).is_dir()
    kw = dict(trust_remote_code=False, local_files_only=local_files_only)
    processor = AutoProcessor.from_pretrained(p, **kw)
    model = LlavaForConditionalGeneration.from_pretrained(p, dtype=dtype, **kw).to(device)
    model.eval()
    return model, processor


def load_llava_with_weights(config_dir: str | os.PathLike, state: dict, dtype: torch.dtype = torch.float32,
                            device: str = "cpu"):
    """``(model, processor)`` from a checkpoint directory's configuration and processor files and
    weights held in memory (the tensors as ``save_pretrained`` names them), in eval mode."""
    from transformers import AutoConfig, AutoProcessor, LlavaForConditionalGeneration

    _silence_transformers_warnings()
    kw = dict(trust_remote_code=False, local_files_only=True)
    processor = AutoProcessor.from_pretrained(str(config_dir), **kw)
    config = AutoConfig.from_pretrained(str(config_dir), **kw)
    model = LlavaForConditionalGeneration.from_pretrained(None, config=config, state_dict=state, dtype=dtype).to(device)
    model.eval()
    return model, processor


# ----------------------------------------------------------------------------- SigLIP2 -> SigLIP


def _siglip2_vision_parts(siglip2):
    """(state dict of the vision transformer without prefix, Siglip2VisionConfig)."""
    vision = getattr(siglip2, "vision_model", siglip2)   # Siglip2Model / Siglip2VisionModel / transformer
    cfg = getattr(siglip2.config, "vision_config", siglip2.config)
    sd = vision.state_dict()
    if any(k.startswith("vision_model.") for k in sd):
        sd = {k.removeprefix("vision_model."): v for k, v in sd.items()}
    return sd, cfg


def siglip_vision_config_from_siglip2(siglip2_vision_config, image_size: int, use_head: bool = False):
    from transformers import SiglipVisionConfig

    c = siglip2_vision_config
    return SiglipVisionConfig(
        hidden_size=c.hidden_size, intermediate_size=c.intermediate_size, num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads, num_channels=c.num_channels, image_size=image_size,
        patch_size=c.patch_size, hidden_act=c.hidden_act, layer_norm_eps=c.layer_norm_eps,
        attention_dropout=c.attention_dropout, vision_use_head=use_head)


def siglip_state_dict_from_siglip2(siglip2, image_size: int, use_head: bool = False) -> dict[str, torch.Tensor]:
    """SigLIP-v1 vision-tower weights (fixed `image_size`) from a SigLIP2 model's vision tower."""
    from transformers.models.siglip2.modeling_siglip2 import Siglip2VisionEmbeddings

    sd, cfg = _siglip2_vision_parts(siglip2)
    p, c, d = cfg.patch_size, cfg.num_channels, cfg.hidden_size
    if image_size % p:
        raise ValueError(f"image_size {image_size} is not a multiple of patch_size {p}")
    n = image_size // p
    out = {k: v.detach().clone() for k, v in sd.items() if use_head or not k.startswith("head.")}
    w = sd["embeddings.patch_embedding.weight"]
    out["embeddings.patch_embedding.weight"] = w.reshape(d, p, p, c).permute(0, 3, 1, 2).contiguous()
    pos = sd["embeddings.position_embedding.weight"]
    g = int(round(pos.shape[0] ** 0.5))
    resized = Siglip2VisionEmbeddings.resize_positional_embeddings(
        pos.reshape(g, g, d), torch.tensor([[n, n]]), max_length=n * n)
    out["embeddings.position_embedding.weight"] = resized[0].contiguous()
    return out


def vision_tower_from_siglip2(siglip2, image_size: int, use_head: bool = False):
    """A ``SiglipVisionModel`` at fixed `image_size` carrying `siglip2`'s vision weights exactly.

    `siglip2` is a ``Siglip2Model`` (the embedder), a ``Siglip2VisionModel`` or its
    ``vision_model``. For LLaVA (#6): ``llava.model.vision_tower.load_state_dict(
    siglip_state_dict_from_siglip2(embedder, image_size))`` with the LLaVA built on
    ``siglip_vision_config_from_siglip2(...)`` (``vision_config`` of :func:`tiny_llava_config`).
    """
    from transformers import SiglipVisionModel

    sd, cfg = _siglip2_vision_parts(siglip2)
    model = SiglipVisionModel(siglip_vision_config_from_siglip2(cfg, image_size, use_head))
    model.load_state_dict(siglip_state_dict_from_siglip2(siglip2, image_size, use_head), strict=True)
    return model.eval()
