"""Mining and decontamination against the eval sets (plain functions, no Dagster import).

* `eval_embeddings`: eval items' images (vision tower) and questions (text tower) with the
  training embedder;
* `build_index` / `KnnIndex`: exact faiss inner-product search, on GPU when available;
* `eval_neighbours`: every eval item's top-k training samples in one space ("image": image
  rows' image embeddings; "question": question-only text embeddings, see
  `mm_assets.relevance.embed_questions`); `nearest_eval_items`: every training sample's most
  similar eval item (what decontamination thresholds);
* `mining_decisions` (keep / upsample with ``copies``) and `decontamination_decisions`
  (drop / keep) — the recipe's cheap decisions on the stored neighbours;
* `domain_share`, `planted_leaks`, `decontamination_report`: quality measures.
"""

from .decisions import copies_for, decontamination_decisions, mining_decisions
from .eval_embeddings import SPACES, EvalEmbeddings, eval_embeddings
from .index import KnnIndex, build_index, gpu_count
from .neighbours import NEIGHBOUR_SCHEMA, eval_neighbours, nearest_eval_items
from .quality import decontamination_report, domain_share, planted_leaks

__all__ = [
    "NEIGHBOUR_SCHEMA", "SPACES", "EvalEmbeddings", "KnnIndex", "build_index", "copies_for",
    "decontamination_decisions", "decontamination_report", "domain_share", "eval_embeddings", "eval_neighbours",
    "gpu_count", "mining_decisions", "nearest_eval_items", "planted_leaks",
]
