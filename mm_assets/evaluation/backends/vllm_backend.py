"""Generation with vLLM (GPU; the ``gpu`` extra). No Dagster import; importing this module
never imports vLLM.

Written against vLLM's documented offline API:

* ``LLM(model=..., trust_remote_code=False, dtype=..., seed=..., limit_mm_per_prompt={"image": 1}, ...)``;
* ``LLM.generate(prompts, SamplingParams(temperature=0, max_tokens=n), use_tqdm=False)`` with each
  prompt a ``{"prompt": text}`` dict, plus ``"multi_modal_data": {"image": PIL image}`` for an
  image row; the text carries one ``<image>`` which vLLM's processor expands to the image's
  feature tokens; outputs come back in prompt order, text in ``output.outputs[0].text``.

Prompts are rendered with the checkpoint's own processor chat template, the same text the HF
back end feeds the model. vLLM tokenises a text prompt *with* special tokens; when the rendered
text already starts with BOS and the tokenizer would add another, the BOS string is dropped
from the text, so the model sees exactly one BOS. Greedy (``temperature=0``); vLLM batches
continuously, so results do not depend on a batch size.
"""

from __future__ import annotations

import gc

from .base import GenerationRequest, tokenizer_adds_bos, user_turn

_INSTALL_HINT = ("vLLM is not installed: install the gpu extra (pip install 'mm-curation[gpu]', "
                 "CUDA machines only) or use the 'hf' back end")


def import_vllm():
    try:
        import vllm
    except ImportError as e:     # also raised for sys.modules["vllm"] = None
        raise RuntimeError(_INSTALL_HINT) from e
    return vllm


class VLLMBackend:
    name = "vllm"

    def __init__(self, checkpoint: str, dtype: str = "auto", seed: int = 0, max_model_len: int | None = None,
                 gpu_memory_utilization: float = 0.9, enforce_eager: bool = False,
                 max_num_seqs: int | None = None, batch_size: int | None = None, device: str | None = None,
                 **llm_kwargs):
        """`batch_size` and `device` are accepted so that ``load_backend(kind, ckpt, batch_size=...,
        device=...)`` works for both kinds; vLLM ignores them (it batches continuously, up to
        `max_num_seqs` sequences, and runs on its own platform). Other keyword arguments go to
        ``vllm.LLM``."""
        vllm = import_vllm()
        from transformers import AutoProcessor

        self.model_id = str(checkpoint)
        self._processor = AutoProcessor.from_pretrained(self.model_id, trust_remote_code=False)
        tok = self._processor.tokenizer
        self._bos = tok.bos_token
        self._strip_bos = tokenizer_adds_bos(tok)
        kw = dict(model=self.model_id, tokenizer=self.model_id, trust_remote_code=False, dtype=dtype, seed=seed,
                  gpu_memory_utilization=gpu_memory_utilization, enforce_eager=enforce_eager,
                  limit_mm_per_prompt={"image": 1})
        if max_model_len is not None:
            kw["max_model_len"] = max_model_len
        if max_num_seqs is not None:
            kw["max_num_seqs"] = max_num_seqs
        kw.update(llm_kwargs)
        self._vllm = vllm
        self.llm = vllm.LLM(**kw)

    def render(self, request: GenerationRequest) -> str:
        text = self._processor.apply_chat_template(user_turn(request.prompt, request.image is not None),
                                                   add_generation_prompt=True, tokenize=False)
        if self._strip_bos and self._bos and text.startswith(self._bos):
            text = text[len(self._bos):]
        return text

    def generate(self, requests: list[GenerationRequest], max_new_tokens: int) -> list[str]:
        if self.llm is None:
            raise RuntimeError("VLLMBackend is closed")
        if not requests:
            return []
        prompts = []
        for r in requests:
            p = {"prompt": self.render(r)}
            if r.image is not None:
                p["multi_modal_data"] = {"image": r.image.convert("RGB")}
            prompts.append(p)
        params = self._vllm.SamplingParams(temperature=0.0, max_tokens=int(max_new_tokens), skip_special_tokens=True)
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [o.outputs[0].text.strip() for o in outputs]

    def close(self) -> None:
        llm, self.llm = self.llm, None
        shutdown_llm(llm)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def shutdown_llm(llm) -> None:
    """Stop a `vllm.LLM`'s engine and release its GPU memory (no-op for None)."""
    if llm is None:
        return
    engine = getattr(llm, "llm_engine", None)
    core = getattr(engine, "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        try:
            core.shutdown()          # V1 engine: stops the engine-core process, frees its GPU memory
        except Exception:
            pass
    del llm, engine, core
    gc.collect()
    try:
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory
        cleanup_dist_env_and_memory()
    except Exception:
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
