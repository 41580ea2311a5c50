"""The embedder: a real SigLIP2 (`transformers.Siglip2Model`) behind its HF interfaces.

Two ways to get one, both returning ``(model, tokenizer, image_processor)``:

* :func:`build_tiny_siglip2` builds a tiny SigLIP2 locally and deterministically (the
  embedded default): text and vision towers of a few layers, a BPE tokenizer trained with
  ``tokenizers`` on the corpus text, and a ``Siglip2ImageProcessor`` constructed with
  explicit parameters. Nothing comes from a hub. :func:`save_embedder` writes it with
  ``save_pretrained`` (safetensors weights, tokenizer, processor config) so that
  :func:`load_embedder` reads it back like any checkpoint.
* :func:`load_embedder` loads any SigLIP2 checkpoint (a local directory or, where the
  environment allows it, a hub id) with ``AutoModel``/``AutoProcessor``,
  ``trust_remote_code=False``, ``local_files_only`` when ``HF_HUB_OFFLINE`` is set.

No Dagster import here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

PAD, UNK, EOS = "<pad>", "<unk>", "</s>"
IMAGE_MEAN = [0.5, 0.5, 0.5]
IMAGE_STD = [0.5, 0.5, 0.5]

# A small fixed corpus for the tokenizer when no corpus text is given: every printable
# ASCII character plus common words, so any text still tokenises without <unk>.
_FALLBACK_CORPUS = [
    " ".join(chr(c) for c in range(33, 127)),
    "the a an of to in is are what which how many much number value image picture chart graph "
    "show shown colour color total answer question describe find compute calculate word text",
]


@dataclass(frozen=True)
class TinySiglip2Spec:
    """Sizes of the tiny SigLIP2. Defaults are what the demo embedder uses."""
    hidden_size: int = 128           # both towers; also the embedding dimension
    intermediate_size: int = 256
    num_attention_heads: int = 4
    vision_layers: int = 2
    text_layers: int = 2
    patch_size: int = 16
    max_num_patches: int = 64        # image processor budget; the position grid is sqrt x sqrt
    max_text_len: int = 64           # text positions; texts are padded to this (SigLIP style)
    vocab_size: int = 2048           # upper bound; the trained tokenizer may be smaller
    tokenizer_min_frequency: int = 2


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _silence_transformers_warnings():
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()


def train_tokenizer(texts: Iterable[str] | None, vocab_size: int = 2048, min_frequency: int = 2):
    """A small BPE tokenizer trained on `texts`, wrapped as a `PreTrainedTokenizerFast`.

    Lower-cased NFKC text, split on whitespace and punctuation, digits one per token (numbers
    carry most of what tells two generated samples apart), ``</s>`` appended, ``<pad>`` id 0.
    Training is deterministic for the same texts in the same order.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(),
        pre_tokenizers.Digits(individual_digits=True)])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=[PAD, UNK, EOS], show_progress=False)
    corpus = list(_FALLBACK_CORPUS) + ([] if texts is None else [t for t in texts if t])
    tok.train_from_iterator(corpus, trainer)
    eos_id = tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}",
                                                       special_tokens=[(EOS, eos_id)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, unk_token=UNK, eos_token=EOS,
                                   model_input_names=["input_ids"], padding_side="right",
                                   truncation_side="right")


def make_image_processor(patch_size: int = 16, max_num_patches: int = 64):
    """A SigLIP2 image processor with every parameter explicit (no hub config).

    Uses the PIL backend (`Siglip2ImageProcessorPil`), which is what transformers selects
    when torchvision is absent; both backends implement the same preprocessing.
    """
    from transformers.image_utils import PILImageResampling
    from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil

    return Siglip2ImageProcessorPil(
        do_resize=True, resample=PILImageResampling.BILINEAR, do_rescale=True, rescale_factor=1 / 255,
        do_normalize=True, image_mean=IMAGE_MEAN, image_std=IMAGE_STD, do_convert_rgb=True,
        patch_size=patch_size, max_num_patches=max_num_patches)


def tiny_siglip2_config(spec: TinySiglip2Spec, tokenizer):
    from transformers import Siglip2Config

    grid = int(round(spec.max_num_patches ** 0.5))
    if grid * grid != spec.max_num_patches:
        raise ValueError(f"max_num_patches must be a square, got {spec.max_num_patches}")
    common = dict(hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
                  num_attention_heads=spec.num_attention_heads, hidden_act="gelu_pytorch_tanh",
                  layer_norm_eps=1e-6, attention_dropout=0.0)
    text = dict(common, num_hidden_layers=spec.text_layers, vocab_size=len(tokenizer),
                max_position_embeddings=spec.max_text_len, projection_size=spec.hidden_size,
                pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
                eos_token_id=tokenizer.eos_token_id)
    vision = dict(common, num_hidden_layers=spec.vision_layers, num_channels=3,
                  patch_size=spec.patch_size, num_patches=spec.max_num_patches)
    return Siglip2Config(text_config=text, vision_config=vision)


def build_tiny_siglip2(seed: int = 0, texts: Iterable[str] | None = None,
                       spec: TinySiglip2Spec | None = None):
    """A randomly initialised tiny SigLIP2: ``(Siglip2Model, tokenizer, image_processor)``.

    Deterministic: the same `seed`, `texts` and `spec` give bit-identical weights and the same
    tokenizer. `texts` is the tokenizer's training corpus (the samples' questions and answers);
    without it a small built-in corpus is used. The global torch RNG is left untouched.
    """
    from transformers import Siglip2Model

    _silence_transformers_warnings()
    spec = spec or TinySiglip2Spec()
    tokenizer = train_tokenizer(texts, spec.vocab_size, spec.tokenizer_min_frequency)
    tokenizer.model_max_length = spec.max_text_len
    config = tiny_siglip2_config(spec, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Siglip2Model(config)
        with torch.no_grad():   # the paper's initialisation of t' = log 10 and b = -10
            model.logit_scale.fill_(float(torch.log(torch.tensor(10.0))))
            model.logit_bias.fill_(-10.0)
    model.eval()
    image_processor = make_image_processor(spec.patch_size, spec.max_num_patches)
    model.config.tiny_siglip2_spec = asdict(spec)
    return model, tokenizer, image_processor


def save_embedder(model, tokenizer, image_processor, path: str | os.PathLike) -> str:
    """Write model (safetensors), tokenizer and image-processor config with `save_pretrained`.

    The tokenizer and image processor are saved separately rather than as a
    `Siglip2Processor`: transformers 5 rebuilds a `Siglip2Processor`'s tokenizer as the Gemma
    pipeline (`Siglip2Tokenizer`), which would silently replace the trained tiny tokenizer.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    image_processor.save_pretrained(path)
    return str(path)


def _load_tokenizer(p: str, auto_cls, **kw):
    """`AutoTokenizer`, except for a local directory whose tokenizer is the generic backend.

    For ``model_type == "siglip2"`` transformers 5 maps a generic ``TokenizersBackend``
    tokenizer to ``Siglip2Tokenizer``, which rebuilds a Gemma pipeline around the vocabulary
    and so changes the tokenisation of a tokenizer trained here. Such a directory is loaded
    with the generic class its ``tokenizer_config.json`` names.
    """
    from transformers import PreTrainedTokenizerFast

    cfg = Path(p) / "tokenizer_config.json"
    if cfg.is_file():
        import json
        declared = json.loads(cfg.read_text()).get("tokenizer_class")
        if declared in ("TokenizersBackend", "PreTrainedTokenizerFast"):
            return PreTrainedTokenizerFast.from_pretrained(p, **kw)
    return auto_cls.from_pretrained(p, **kw)


def load_embedder(path_or_id: str | os.PathLike, dtype: torch.dtype | None = None,
                  local_files_only: bool | None = None):
    """Load a SigLIP2 checkpoint: ``(model, tokenizer, image_processor)``, model in eval mode.

    Model through ``AutoModel``; tokenizer and image processor through ``AutoTokenizer`` and
    ``AutoImageProcessor`` (what ``AutoProcessor`` combines). Works for the tiny model written
    by :func:`save_embedder` and for real checkpoints
    (e.g. ``google/siglip2-base-patch16-naflex`` already in the local HF cache or a directory).
    ``trust_remote_code`` is always off. ``local_files_only`` defaults to True when
    ``HF_HUB_OFFLINE`` is set or `path_or_id` is an existing directory.
    """
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    _silence_transformers_warnings()
    p = str(path_or_id)
    if local_files_only is None:
        local_files_only = _offline() or Path(p).is_dir()
    kw = dict(trust_remote_code=False, local_files_only=local_files_only)
    model = AutoModel.from_pretrained(p, dtype=dtype or torch.float32, **kw)
    model.eval()
    # The two halves of `AutoProcessor`, loaded one by one so that each keeps the class its
    # own config names (see `save_embedder`).
    tokenizer = _load_tokenizer(p, AutoTokenizer, **kw)
    image_processor = AutoImageProcessor.from_pretrained(p, **kw)
    return model, tokenizer, image_processor


def embedding_dim(model) -> int:
    cfg = model.config
    vision = getattr(cfg, "vision_config", cfg)
    return int(vision.hidden_size)


def text_max_length(model) -> int:
    """Texts are padded to the text tower's full length (as SigLIP is trained)."""
    cfg = getattr(model.config, "text_config", model.config)
    return int(getattr(cfg, "max_position_embeddings", 64))
