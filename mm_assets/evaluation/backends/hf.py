"""Generation with transformers: ``AutoProcessor`` + ``LlavaForConditionalGeneration``.

Batched greedy decoding with the KV cache, prompts **left**-padded so that every row's last
prompt token sits at the same position; ``generate`` derives position ids from the attention
mask, so padding changes nothing: batched output equals one-by-one output (tested). Image and
text-only requests go in separate batches (a text-only row has no pixel values); within each
group requests are sorted by prompt length so a batch pads little. Results come back in
request order.

BOS: a rendered chat that already starts with the BOS string is tokenised with
``add_special_tokens=False`` (what ``ProcessorMixin.apply_chat_template(tokenize=True)`` does),
so a checkpoint whose template *and* tokenizer both add BOS still gets exactly one.

No Dagster import; torch is imported when a backend is created, so that loading the code
location (every run worker does) does not import it for runs that never generate.
"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

from .base import GenerationRequest, user_turn

if TYPE_CHECKING:
    import torch


class HFBackend:
    """`checkpoint`: a directory written by ``save_pretrained`` (or a hub id already in the local
    cache). ``trust_remote_code`` is off; ``local_files_only`` when ``HF_HUB_OFFLINE`` is set or
    `checkpoint` is a directory."""

    name = "hf"

    def __init__(self, checkpoint: str, batch_size: int = 8, device: str = "cpu",
                 dtype: torch.dtype | None = None, local_files_only: bool | None = None, loaded=None):
        """`loaded`: a (model, processor) already in memory (a soup merged there); `checkpoint`
        then only names it."""
        import torch

        from mm_assets.vlm.tiny_llava import load_llava

        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model_id = str(checkpoint)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.model, self.processor = loaded if loaded is not None else load_llava(
            checkpoint, dtype=dtype or torch.float32, device=device, local_files_only=local_files_only)
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            raise ValueError(f"{checkpoint}: the tokenizer has no pad token; batched generation needs one")

    # ------------------------------------------------------------------ helpers
    def render(self, request: GenerationRequest) -> str:
        """The prompt text the model sees (chat template with generation prompt; BOS included)."""
        return self.processor.apply_chat_template(user_turn(request.prompt, request.image is not None),
                                                  add_generation_prompt=True, tokenize=False)

    def encode(self, requests: list[GenerationRequest]):
        """Model inputs for one batch (all with images or all without), left-padded."""
        texts = [self.render(r) for r in requests]
        return self._inputs(texts, [r.image for r in requests] if requests[0].image is not None else None)

    def _inputs(self, texts: list[str], images: list | None):
        bos = self.tokenizer.bos_token
        add_special = not (bos and all(t.startswith(bos) for t in texts))
        inputs = self.processor(text=texts, images=images, padding=True, padding_side="left",
                                add_special_tokens=add_special, return_tensors="pt").to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        return inputs

    def _batches(self, texts: list[str], requests: list[GenerationRequest]) -> list[list[int]]:
        """Request indices per batch: image rows and text rows apart, longest prompts first."""
        lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        batches = []
        for with_image in (True, False):
            idx = [i for i, r in enumerate(requests) if (r.image is not None) == with_image]
            idx.sort(key=lambda i: -lengths[i])          # stable: ties keep request order
            batches += [idx[s:s + self.batch_size] for s in range(0, len(idx), self.batch_size)]
        return batches

    # ------------------------------------------------------------------ interface
    def generate(self, requests: list[GenerationRequest], max_new_tokens: int) -> list[str]:
        if self.model is None:
            raise RuntimeError("HFBackend is closed")
        if not requests:
            return []
        texts = [self.render(r) for r in requests]
        results: list[str] = [""] * len(requests)
        import torch

        eos = self.model.generation_config.eos_token_id
        with torch.inference_mode():
            for batch in self._batches(texts, requests):
                has_image = requests[batch[0]].image is not None
                images = [requests[i].image for i in batch] if has_image else None
                inputs = self._inputs([texts[i] for i in batch], images)
                out = self.model.generate(**inputs, do_sample=False, num_beams=1, use_cache=True,
                                          max_new_tokens=int(max_new_tokens),
                                          pad_token_id=self.tokenizer.pad_token_id, eos_token_id=eos)
                new = out[:, inputs["input_ids"].shape[1]:]
                for i, text in zip(batch, self.tokenizer.batch_decode(new, skip_special_tokens=True)):
                    results[i] = text.strip()
        return results

    def close(self) -> None:
        self.model = None
        self.processor = None
        self.tokenizer = None
        gc.collect()
        if self.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
