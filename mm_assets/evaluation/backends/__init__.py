"""Generation back ends for evaluation (and later training-time sampling): one interface,
``GenerationBackend``, implemented with transformers (``hf``, CPU/GPU) and vLLM (``vllm``, GPU).
No Dagster import; vLLM is imported only when a ``VLLMBackend`` is created."""

from .base import BACKEND_KINDS, GenerationBackend, GenerationRequest, load_backend
from .hf import HFBackend
from .vllm_backend import VLLMBackend

__all__ = ["BACKEND_KINDS", "GenerationBackend", "GenerationRequest", "HFBackend", "VLLMBackend", "load_backend"]
