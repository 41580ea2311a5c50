"""Data mixing by model merging: soups of per-domain experts (plain functions)."""
