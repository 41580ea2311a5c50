"""The training resource: base model and optimisation settings of `training_run[recipe]`."""

import dagster as dg
from pydantic import Field


class TrainingResource(dg.ConfigurableResource):
    """`base_model`: a LLaVA-format checkpoint path (production), or "tiny": a tiny LLaVA built
    here around the embedder's SigLIP2 vision tower, with a BPE tokenizer trained on the corpus."""

    base_model: str = Field(default="tiny", description='LLaVA-format checkpoint path, or "tiny"')
    epochs: int = Field(default=2, ge=1)
    lr: float = Field(default=2e-3, gt=0)
    schedule: str = Field(default="cosine", description="cosine | linear | constant (with warm-up)")
    warmup: float = Field(default=0.05, ge=0, description="steps, or a fraction of all steps when < 1")
    batch_size: int = Field(default=4, gt=0, description="rows per micro-batch")
    grad_accum: int = Field(default=1, gt=0)
    max_len: int = Field(default=512, gt=16, description="packed row length in tokens")
    packing: bool = True
    seed: int = 0
    save_every_steps: int = Field(default=0, ge=0, description="0 = a checkpoint per epoch only")
