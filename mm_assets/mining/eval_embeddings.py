"""Eval items embedded with the training embedder: images by the vision tower, questions by
the text tower (the same question-only text as `mm_assets.relevance.embed_questions`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

SPACES = ("image", "question")


@dataclass
class EvalEmbeddings:
    """Row i of `image` and `question` belongs to ``item_ids[i]`` of ``benchmarks[i]``."""
    item_ids: list[str]
    benchmarks: list[str]
    image: np.ndarray
    question: np.ndarray

    def vectors(self, space: str) -> np.ndarray:
        if space not in SPACES:
            raise ValueError(f"unknown space {space!r}; known: {SPACES}")
        return self.image if space == "image" else self.question

    def __len__(self) -> int:
        return len(self.item_ids)

    @classmethod
    def concat(cls, parts: list["EvalEmbeddings"]) -> "EvalEmbeddings":
        if not parts:
            raise ValueError("nothing to concatenate")
        return cls([i for p in parts for i in p.item_ids], [b for p in parts for b in p.benchmarks],
                   np.concatenate([p.image for p in parts]), np.concatenate([p.question for p in parts]))


def eval_embeddings(model, tokenizer, image_processor, items: pl.DataFrame, *, batch_size: int = 64,
                    num_workers: int | None = None, num_threads: int | None = None) -> EvalEmbeddings:
    """Embed eval items in the uniform eval-set schema (``item_id``, ``benchmark``,
    ``question``, ``image`` bytes): L2-normalised float32 rows, in table order."""
    from mm_assets.embeddings import embed_images, embed_texts
    from mm_assets.relevance import question_text

    ids = items["item_id"].to_list()
    keys = [f"{b}/{i}" for b, i in zip(items["benchmark"].to_list(), ids)]
    got, image = embed_images(model, image_processor, list(zip(keys, items["image"].to_list())), batch_size,
                              num_workers=num_workers, num_threads=num_threads)
    if got != keys:
        raise ValueError("image embeddings are not aligned with the eval items")
    question = embed_texts(model, tokenizer, [question_text(q or "") for q in items["question"].to_list()],
                           num_threads=num_threads)
    return EvalEmbeddings(ids, items["benchmark"].to_list(), image, question)
