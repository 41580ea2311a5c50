"""Curated datasets: a recipe's decisions applied to the samples, as immutable WebDataset versions."""
