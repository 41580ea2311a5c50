"""Length filter: the worked example of adding a curation step (see the README)."""
