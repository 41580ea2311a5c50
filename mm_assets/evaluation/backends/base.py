"""The generation interface every evaluation back end implements (no Dagster import).

A request is the user's text and, for image rows, one image. The prompt is the plain user
text: it never contains an image placeholder. The back end renders the checkpoint's chat
template (``add_generation_prompt=True``), which puts the placeholder (``<image>`` for LLaVA)
where the model expects it.

``generate`` is greedy and deterministic, keeps the input order, and returns only the newly
generated text with special tokens removed and surrounding whitespace stripped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import PIL.Image

IMAGE_PLACEHOLDER = "<image>"


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    image: PIL.Image.Image | None = None

    def __post_init__(self):
        if not isinstance(self.prompt, str):
            raise TypeError(f"prompt must be str, got {type(self.prompt).__name__}")
        if IMAGE_PLACEHOLDER in self.prompt:
            raise ValueError("GenerationRequest.prompt must not contain '<image>': pass the image in `image`; "
                             "the back end places the placeholder through the chat template")


@runtime_checkable
class GenerationBackend(Protocol):
    name: str
    model_id: str

    def generate(self, requests: list[GenerationRequest], max_new_tokens: int) -> list[str]:
        """Greedy completions, one per request, in request order (generated text only)."""
        ...

    def close(self) -> None:
        """Release the model's memory; the back end is unusable afterwards."""
        ...


def user_turn(prompt: str, with_image: bool) -> list[dict]:
    """One user message in the HF processor form: ``[{"type": "image"},] {"type": "text", ...}``."""
    content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": prompt}]
    return [{"role": "user", "content": content}]


def tokenizer_adds_bos(tokenizer) -> bool:
    """Whether ``tokenizer(text)`` (special tokens on) puts BOS in front by itself."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos


BACKEND_KINDS = ("hf", "vllm")


def load_backend(kind: str, checkpoint: str, **options) -> GenerationBackend:
    """``"hf"``: :class:`~.hf.HFBackend` (transformers, CPU or GPU); ``"vllm"``:
    :class:`~.vllm_backend.VLLMBackend` (GPU, needs the ``gpu`` extra). `options` go to the
    back end's constructor."""
    if kind == "hf":
        from .hf import HFBackend
        return HFBackend(checkpoint, **options)
    if kind == "vllm":
        from .vllm_backend import VLLMBackend
        return VLLMBackend(checkpoint, **options)
    raise ValueError(f"unknown generation back end {kind!r}; expected one of {BACKEND_KINDS}")
