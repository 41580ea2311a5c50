"""Model resources: which embedder the embeddings stage uses."""

import dagster as dg
from pydantic import Field

TINY = "tiny"


class EmbedderResource(dg.ConfigurableResource):
    """SigLIP2 embedder. `model` is a path or id of a real SigLIP2 checkpoint (production), or
    "tiny": build a tiny SigLIP2 locally and train it on the sample pool (the `embedder` asset)."""

    model: str = Field(default=TINY, description='SigLIP2 checkpoint path/id, or "tiny"')
    train_steps: int = Field(default=240, gt=0, description="tiny only: sigmoid-loss training steps")
    train_batch_size: int = Field(default=64, gt=1)
    seed: int = 0
    batch_size: int = Field(default=64, gt=0, description="inference batch size")
    decode_workers: int = Field(default=1, ge=0, description="threads decoding images ahead of the forward pass")

    @property
    def is_tiny(self) -> bool:
        return self.model == TINY
