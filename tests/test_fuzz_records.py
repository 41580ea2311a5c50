"""Property-based tests of record validation, the tar index and the whole source step: whatever
the input, no crash; every element is either ingested or quarantined, and the counts add up.
(The JSON-array splitter's own fuzz tests are in test_json_array.py.)

MM_FUZZ_EXAMPLES raises the number of examples for a long run (the suite uses 400 per target,
40 for the end-to-end target, which runs the source scan and ingest per example).
"""

import gzip
import io
import json
import os
import tarfile

from hypothesis import HealthCheck, given, settings, strategies as st

from mm_assets.sources.reasons import Reason
from mm_assets.sources.records import IMAGE_TOKEN, Record, Rejection, decode_element, validate_record
from mm_assets.sources.tar_index import MemberReader, index_tarball

N = int(os.environ.get("MM_FUZZ_EXAMPLES", "400"))
FUZZ = settings(max_examples=N, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DOMAINS = {"gen_chart_bar": "chart", "gen_language": "language"}

TEXT = st.lists(st.sampled_from(["<image>", "<image>", "\n", " ", "Q", "é", "\u2028", "\ud800", "..", "/"]),
                max_size=8).map("".join)
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                    max_leaves=12)
TURN = st.one_of(st.fixed_dictionaries({"from": st.sampled_from(["human", "gpt", "system"]), "value": TEXT}), JSON)
RECORD_LIKE = st.fixed_dictionaries(
    {}, optional={"id": st.one_of(st.integers(-10**30, 10**30), TEXT, JSON),
                  "image": st.one_of(TEXT, st.lists(TEXT, max_size=3), JSON),
                  "source": st.one_of(st.sampled_from(sorted(DOMAINS) + ["gen_chаrt_bar"]), JSON),
                  "conversations": st.one_of(st.lists(TURN, max_size=5), JSON)})


@FUZZ
@given(st.one_of(RECORD_LIKE, JSON))
def test_record_validation_never_crashes_and_an_accepted_record_is_well_formed(value):
    out = validate_record(value, DOMAINS)
    if isinstance(out, Rejection):
        assert isinstance(out.reason, Reason) and out.detail
        return
    assert isinstance(out, Record) and out.domain == DOMAINS[out.source]
    roles = [t["from"] for t in out.conversations]
    assert roles and len(roles) % 2 == 0 and roles == ["human", "gpt"] * (len(roles) // 2)
    n_tokens = sum(t["value"].count(IMAGE_TOKEN) for t in out.conversations)
    assert n_tokens == (0 if out.image is None else 1)
    for text in [out.source, out.original_id, out.image or ""] + [t["value"] for t in out.conversations]:
        text.encode("utf-8")          # writable as UTF-8 downstream
    assert out.image is None or ".." not in out.image.split("/")


@FUZZ
@given(st.binary(max_size=200))
def test_decoding_random_bytes_never_crashes(data):
    out = decode_element(data)
    assert not isinstance(out, Rejection) or out.detail


def tarball(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)


MEMBERS = st.lists(st.tuples(st.from_regex(r"[a-z]{1,6}/[a-z0-9]{1,8}\.png", fullmatch=True), st.binary(max_size=3000)),
                   min_size=1, max_size=5, unique_by=lambda m: m[0])


@FUZZ
@given(MEMBERS, st.data())
def test_a_damaged_tarball_never_crashes_the_index_and_every_complete_member_reads_back(members, data):
    """Cut anywhere, or a byte flipped anywhere: the index lists what it could read; a member
    marked complete reads back exactly (or, at the very cut of a truncated tarball, fails to read
    with an error ingest quarantines), and an intact tarball lists and reads every member."""
    gz = tarball(members)
    damage = data.draw(st.sampled_from(["none", "cut", "flip"]))
    at = data.draw(st.integers(0, len(gz) - 1))
    damaged = {"none": gz, "cut": gz[:at], "flip": gz[:at] + bytes([gz[at] ^ 0x5A]) + gz[at + 1:]}[damage]
    ix = index_tarball(io.BytesIO(damaged), "t.tar.gz")
    if damage == "none":
        assert ix.error is None and [m[0] for m in ix.members] == [m[0] for m in members]
    expected = dict(members)
    for path, offset, size, complete in ix.members:
        assert offset + size <= ix.uncompressed_bytes or not complete
        if complete and path in expected and size == len(expected[path]) and damage != "flip":
            reader = MemberReader(io.BytesIO(damaged), gzipped=True, seek_points=None)
            try:
                assert reader.read(offset, size) == expected[path]
            except (OSError, EOFError):
                # zlib can inflate a few bytes of a cut stream that indexed_gzip will not hand
                # back: ingest quarantines such a member as truncated_tarball with this error
                assert damage == "cut" and ix.truncated


GOOD = {"id": 0, "image": "imgs/0.png", "source": "gen_chart_bar",
        "conversations": [{"from": "human", "value": "<image>\nQ?"}, {"from": "gpt", "value": "A"}]}
ELEMENT = st.one_of(st.just(json.dumps(GOOD).encode()), RECORD_LIKE.map(lambda r: json.dumps(r).encode()),
                    st.binary(max_size=40), st.sampled_from([b"{", b"}", b"[", b"]", b'"', b",", b"{}", b"null"]))


@settings(max_examples=max(N // 10, 10), deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                                  HealthCheck.function_scoped_fixture])
@given(st.lists(ELEMENT, min_size=1, max_size=8))
def test_every_element_is_either_ingested_or_quarantined(tmp_path_factory, elements):
    """The source step end to end on random arrays: samples + quarantine rows = elements the
    splitter saw; nothing raises."""
    import polars as pl

    from mm_assets.sources.ingest import ingest_domain
    from mm_assets.sources.samples_table import build_samples_table
    from mm_assets.sources.source_scan import SourceSpec, scan_sources
    from mm_assets.storage import Storage
    from test_hostile_inputs import png

    root = tmp_path_factory.mktemp("fuzz")
    (root / "images").mkdir()
    (root / "images" / "part.tar.gz").write_bytes(tarball([("imgs/0.png", png(0))]))
    (root / "data.json").write_bytes(b"[" + b",".join(elements) + b"]")
    (root / "map.json").write_text(json.dumps(DOMAINS))
    out = Storage(str(root / "out"))
    manifest = scan_sources([SourceSpec("s", str(root / "data.json"), str(root / "images"))],
                            str(root / "map.json"), out.child("source"))
    ordinals = out.child("source").read_parquet("quarantine.parquet")["ordinal"].to_list()
    for domain in ("chart", "language"):
        if manifest["domains"][domain]["records"] == 0:
            continue
        raw = out.child(f"raw/{domain}")
        shards = ingest_domain(out.child("source"), manifest, domain, raw)
        ordinals += build_samples_table(raw, shards)["ordinal"].to_list()
        ordinals += pl.concat([raw.read_parquet(s["quarantine"]) for s in shards["shards"]])["ordinal"].to_list()
    # every element the splitter delimited has exactly one outcome: a sample or a quarantine row
    assert sorted(ordinals) == list(range(len(ordinals)))
    if all(e == json.dumps(GOOD).encode() for e in elements):
        assert len(ordinals) == len(elements)
