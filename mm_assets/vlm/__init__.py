"""The VLM trained and evaluated on curated data: a real ``LlavaForConditionalGeneration``
(SigLIP vision tower, projector, Llama language model) behind its HF interfaces, plus the
byte-level BPE tokenizer with the LLaVA-style chat template. No Dagster import.

* tokenizer: `train_bpe_tokenizer` (BOS from the chat template only), `render_chat`;
* tiny_llava: `build_tiny_llava` (tiny, local, seed-deterministic, saved with
  `save_pretrained`), `load_llava`, `vision_tower_from_siglip2` (the embedder's SigLIP2 vision
  weights as a fixed-resolution SigLIP tower, exact).
"""

from .tiny_llava import (TinyLlavaSpec, build_tiny_llava, build_tiny_llava_model, load_llava, make_image_processor,
                         make_processor, save_llava, siglip_state_dict_from_siglip2,
                         siglip_vision_config_from_siglip2, tiny_llava_config, vision_tower_from_siglip2)
from .tokenizer import BOS, CHAT_TEMPLATE, EOS, IMAGE, PAD, render_chat, train_bpe_tokenizer, user_message

__all__ = [
    "BOS", "CHAT_TEMPLATE", "EOS", "IMAGE", "PAD", "TinyLlavaSpec", "build_tiny_llava", "build_tiny_llava_model",
    "load_llava", "make_image_processor", "make_processor", "render_chat", "save_llava",
    "siglip_state_dict_from_siglip2", "siglip_vision_config_from_siglip2", "tiny_llava_config",
    "train_bpe_tokenizer", "user_message", "vision_tower_from_siglip2",
]
