"""The tolerant JSON-array splitter: every element comes out with its exact byte span."""

import io
import json

import pytest

from mm_assets.sources.json_array import JsonArrayScanner, NotAJsonArray


def scan(data: bytes, chunk_size: int = 8 << 20):
    sc = JsonArrayScanner(io.BytesIO(data), chunk_size=chunk_size)
    return list(sc), sc


TRICKY = [
    {"id": 1, "s": 'brackets ], } and [ { inside a string'},
    {"id": "2", "s": 'escaped \\" quote and backslash \\\\', "n": [1, [2, {"x": 3}]]},
    {"id": 3, "s": "unicode é 漢字 \u2028 emoji 😀", "empty": {}},
    {"id": 4, "s": "\\\\\\\\"},
    [1, 2],
    "a bare string, with a comma",
    42,
    None,
]


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 64, 8 << 20])
def test_elements_round_trip_at_any_chunk_boundary(chunk_size):
    data = json.dumps(TRICKY, ensure_ascii=False, indent=1).encode()
    elements, sc = scan(data, chunk_size)
    assert [json.loads(e.data) for e in elements] == TRICKY
    assert [e.ordinal for e in elements] == list(range(len(TRICKY)))
    for e in elements:  # offsets point at the element's bytes in the file
        assert data[e.offset:e.offset + len(e.data)] == e.data
    assert sc.closed_properly and sc.bytes_read == len(data)
    assert not any(e.truncated or e.unbalanced for e in elements)


def test_bad_elements_are_isolated_and_the_rest_survive():
    data = b'[{"a":1}, {"b": [}, {"c": 2,}, {"d": "\xff\xfe"}, {"e": 5}]'
    elements, sc = scan(data, 4)
    assert len(elements) == 5
    assert elements[1].unbalanced
    assert json.loads(elements[0].data) == {"a": 1} and json.loads(elements[4].data) == {"e": 5}
    with pytest.raises(json.JSONDecodeError):
        json.loads(elements[2].data)
    with pytest.raises(UnicodeDecodeError):
        elements[3].data.decode()
    assert sc.closed_properly


def test_truncated_file_yields_a_truncated_last_element():
    elements, sc = scan(b'[{"a": 1}, {"b": "cut he', 3)
    assert [e.truncated for e in elements] == [False, True]
    assert not sc.closed_properly


def test_empty_and_whitespace_arrays():
    assert scan(b"[]")[0] == []
    assert scan(b"  \n [ \n ] \n")[0] == []


def test_not_an_array_is_rejected_with_the_offset():
    with pytest.raises(NotAJsonArray, match="byte 2"):
        scan(b'  {"a": 1}')


def test_hash_covers_the_whole_file():
    import hashlib
    data = b'[{"a": 1}]   \n'
    _, sc = scan(data, 2)
    assert sc.sha256 == hashlib.sha256(data).hexdigest()
