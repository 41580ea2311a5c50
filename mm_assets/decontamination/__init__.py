"""Decontamination: drop training samples too similar to an eval item (the plain functions are
`mm_assets.mining.decontamination_decisions` and its reports; the step is `step`)."""
