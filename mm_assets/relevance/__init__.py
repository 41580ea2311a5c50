"""Image-text relevance: flag questions unrelated to their image (see `flag` for the method)."""

from .flag import (RULES, SCORE_SCHEMA, catch_report, embed_questions, flag_unrelated, planted_unrelated,
                   question_text, relevance_decisions, relevance_scores, robust_z)

__all__ = ["RULES", "SCORE_SCHEMA", "catch_report", "embed_questions", "flag_unrelated", "planted_unrelated",
           "question_text", "relevance_decisions", "relevance_scores", "robust_z"]
