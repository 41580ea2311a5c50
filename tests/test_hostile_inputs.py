"""Hostile inputs through the source scan and ingest (plain functions): one bad record is
quarantined with its reason and never stops the scan, loses its neighbours, or blocks a domain;
a wrong input path is a configuration error before any work, not an empty success."""

import io
import json
import tarfile

import polars as pl
import pytest

from mm_assets.sources.ingest import ingest_domain
from mm_assets.sources.samples_table import build_samples_table
from mm_assets.sources.source_scan import MissingInput, SourceSpec, scan_sources
from mm_assets.storage import Storage

SOURCE = "gen_chart_bar"


def png(seed: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (seed * 40 % 256, 10, 20)).save(buf, format="PNG")
    return buf.getvalue()


def record(i: int, **kw) -> dict:
    rec = {"id": f"r{i}", "image": f"imgs/{i}.png", "source": SOURCE,
           "conversations": [{"from": "human", "value": "<image>\nWhat colour is it?"},
                             {"from": "gpt", "value": f"Colour {i}."}]}
    rec.update(kw)
    return rec


def write_source(root, elements: list[bytes], n_images: int = 10, prefix: bytes = b"",
                 extra_members: tuple[tarfile.TarInfo, ...] = ()):
    """A Mammoth-layout source: the array from raw element bytes, one tarball of images (plus
    `extra_members`, whose regular files get a valid PNG as their data)."""
    (root / "images").mkdir(parents=True)
    with tarfile.open(root / "images" / "part.tar.gz", "w:gz") as t:
        for i in range(n_images):
            data = png(i)
            info = tarfile.TarInfo(f"imgs/{i}.png")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        for info in extra_members:
            data = png(99) if info.isreg() else b""
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    (root / "data.json").write_bytes(prefix + b"[" + b",\n".join(elements) + b"]")
    (root / "map.json").write_text(json.dumps({SOURCE: "chart"}))
    return SourceSpec("s", str(root / "data.json"), str(root / "images")), str(root / "map.json")


def run(tmp_path, elements, **kw):
    spec, mapping = write_source(tmp_path / "in", elements, **kw)
    out = Storage(str(tmp_path / "out"))
    manifest = scan_sources([spec], mapping, out.child("source"))
    shards = ingest_domain(out.child("source"), manifest, "chart", out.child("raw"), samples_per_shard=4)
    samples = build_samples_table(out.child("raw"), shards)
    quarantine = pl.concat([out.child("source").read_parquet("quarantine.parquet"),
                            *[out.child("raw").read_parquet(s["quarantine"]) for s in shards["shards"]]],
                           how="diagonal_relaxed")
    return manifest, samples, quarantine


def enc(rec) -> bytes:
    return json.dumps(rec).encode()


GOOD = [enc(record(i)) for i in range(10)]


@pytest.mark.parametrize("name, bad, reason", [
    ("missing closing brace", enc(record(3))[:-1], "invalid_json"),
    ("unterminated string", enc(record(3)).replace(b'"Colour 3."', b'"Colour 3.'), "invalid_json"),
    ("10000 levels of nesting", enc(record(3, deep=None))[:-6] + b"[" * 10_000 + b"]" * 10_000 + b"}", "too_deep"),
    ("an id of 5001 digits", enc(record(3)).replace(b'"r3"', b"9" * 5001), "invalid_json"),
    ("a lone surrogate escape", enc(record(3)).replace(b"Colour 3.", b"Colour \\ud800 3."), "invalid_unicode"),
    # found by the fuzz test: the quarantine table itself could not be written
    ("a rejected record with a lone surrogate in its id", enc(record(3, id="\ud800x", conversations=[])),
     "empty_conversation"),
])
def test_one_bad_record_is_quarantined_and_loses_nothing_else(tmp_path, name, bad, reason):
    elements = list(GOOD)
    elements[3] = bad
    manifest, samples, quarantine = run(tmp_path, elements)
    assert sorted(samples["original_id"].to_list()) == sorted(f"r{i}" for i in range(10) if i != 3)
    assert quarantine["reason"].to_list() == [reason], quarantine.to_dicts()
    assert quarantine["ordinal"].to_list() == [3] and quarantine["detail"][0]


def test_a_utf8_byte_order_mark_before_the_array_is_accepted(tmp_path):
    manifest, samples, quarantine = run(tmp_path, GOOD, prefix=b"\xef\xbb\xbf")
    assert samples.height == 10 and quarantine.height == 0
    assert manifest["annotations"][0]["byte_order_mark"] is True


def test_a_directory_named_like_a_tarball_is_skipped_and_reported(tmp_path):
    spec, mapping = write_source(tmp_path / "in", GOOD)
    (tmp_path / "in" / "images" / "oops.tar.gz").mkdir()
    manifest = scan_sources([spec], mapping, Storage(str(tmp_path / "out")))
    (skipped,) = [t for t in manifest["tarballs"] if t["tarball"] == "oops.tar.gz"]
    assert "not a regular file" in skipped["error"]
    assert manifest["domains"]["chart"]["records"] == 10


@pytest.mark.parametrize("broken", ["images", "annotations", "domain_map"])
def test_a_wrong_input_path_is_a_configuration_error_and_creates_nothing(tmp_path, broken):
    spec, mapping = write_source(tmp_path / "in", GOOD)
    typo = tmp_path / "in" / "typo" / "nested"
    spec = SourceSpec(spec.name, str(typo / "data.json") if broken == "annotations" else spec.annotations,
                      str(typo) if broken == "images" else spec.images)
    mapping = str(typo / "map.json") if broken == "domain_map" else mapping
    with pytest.raises(MissingInput, match="does not exist"):
        scan_sources([spec], mapping, Storage(str(tmp_path / "out")))
    assert not (tmp_path / "in" / "typo").exists()
    assert not (tmp_path / "out").exists()


def member(name: str, kind: bytes = tarfile.REGTYPE, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


HOSTILE_MEMBERS = (member("imgs/sym.png", tarfile.SYMTYPE, "0.png"),
                   member("imgs/outside.png", tarfile.SYMTYPE, "/etc/passwd"),
                   member("imgs/hard.png", tarfile.LNKTYPE, "imgs/1.png"),
                   member("imgs/../../escape.png"),
                   member("imgs/dev.png", tarfile.CHRTYPE),
                   member("/abs/b.png"))


@pytest.mark.parametrize("image, reason, detail", [
    ("imgs/sym.png", "refused_member", "symbolic link to '0.png'"),
    ("imgs/outside.png", "refused_member", "symbolic link to '/etc/passwd'"),
    ("imgs/hard.png", "refused_member", "hard link"),
    ("imgs/../../escape.png", "unsafe_path", "leaves the source's directory"),
    ("../escape.png", "unsafe_path", "leaves the source's directory"),
    ("imgs/dev.png", "refused_member", "not a regular file"),
    ("imgs/absent.png", "missing_image", "none of the source's tarballs"),
])
def test_a_record_naming_a_hostile_tar_member_is_quarantined_with_the_reason(tmp_path, image, reason, detail):
    elements = list(GOOD)
    elements[3] = enc(record(3, image=image))
    manifest, samples, quarantine = run(tmp_path, elements, extra_members=HOSTILE_MEMBERS)
    assert sorted(samples["original_id"].to_list()) == sorted(f"r{i}" for i in range(10) if i != 3)
    assert quarantine["reason"].to_list() == [reason], quarantine.to_dicts()
    assert detail in quarantine["detail"][0]
    (tarball,) = manifest["tarballs"]
    assert tarball["refused_members"] == 5 and tarball["error"] is None
    assert not list(tmp_path.rglob("escape.png"))


def test_an_absolute_member_name_is_read_relative_as_tar_itself_extracts_it(tmp_path):
    """GNU tar and Python's `data` extraction filter strip the leading `/`; so does the index."""
    elements = list(GOOD)
    elements[3] = enc(record(3, image="abs/b.png"))
    _, samples, quarantine = run(tmp_path, elements, extra_members=HOSTILE_MEMBERS)
    assert samples.height == 10 and quarantine.height == 0
