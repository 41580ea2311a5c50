"""Where the data set lives is lineage, not identity: end to end on the filled small graph."""

import shutil

from conftest import SMALL_BUDGET_TOKENS
from curation_graph import copy_graph, small_graph_resources


def test_the_same_data_at_another_path_is_scanned_again_and_recomputes_nothing(small_graph, small_data, tmp_path):
    """A data set moved, copied or mounted elsewhere is scanned again (the files' paths and
    stamps are the scan's cache key) but has the same identity: `source`, the shards and the
    samples tables keep their data versions, the shards are reused, and the daemon's automation
    requests nothing. Before, the annotation file's path was in the record pointers, the
    quarantine table and every shard's bytes, so a moved data set re-ingested, re-embedded and
    retrained everything downstream (an hour at study scale)."""
    moved = tmp_path / "mounted" / "elsewhere"
    shutil.copytree(small_data, moved)
    home = tmp_path / "home"
    with copy_graph(small_graph, home, moved, **small_graph_resources(home, SMALL_BUDGET_TOKENS)) as g:
        before = {(key, p): g.data_version(key, p) for key, p in
                  (("source", None), ("raw_shards", "chart"), ("samples", "chart"))}
        g.run("source_job")
        meta = g.meta("source")
        assert meta["reused"] is False                      # scanned again, at the new path
        assert [a["uri"] for a in meta["annotations"]] == [
            str(moved / name / "mammoth_si.json") for name in ("main", "dirty")]   # lineage: where
        assert g.data_version("source") == before[("source", None)]      # identity: what
        assert g.automation_tick() == {}
        g.run("ingest_domain_job", "chart")
        for key, p in (("raw_shards", "chart"), ("samples", "chart")):
            assert g.data_version(key, p) == before[(key, p)] and g.meta(key, p)["reused"] is True, key
