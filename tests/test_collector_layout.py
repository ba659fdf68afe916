"""Any JSON layout -> documents at their positions (collectors.layout), pure."""

from __future__ import annotations

import json
import mmap
from pathlib import Path
from typing import Any

import pytest

from collectors import layout
from collectors.layout import JsonDocuments, Unreadable, envelope, search_hits


def docs(data: bytes | str) -> list[tuple[int, Any]]:
    return [(position, value.reason if isinstance(value, Unreadable) else value)
            for position, value in JsonDocuments(data)]


def test_public_names_are_pinned() -> None:
    assert layout.__all__ == ["EOT_MESSAGE", "JSON_LINE", "MULTILINE", "Hit", "JsonDocuments",
                              "Unreadable", "envelope", "hits_of", "json_type", "search_hits"]


def test_json_lines_are_one_document_a_line_numbered_by_line() -> None:
    reader = JsonDocuments(b'{"a": 1}\n\n  {"a": 2}  \n[3]\n')
    assert list(reader) == [(1, {"a": 1}), (3, {"a": 2}), (4, [3])]
    assert reader.layouts == {"JSON line": 3}


def test_a_pretty_printed_document_is_one_document_at_its_first_line() -> None:
    first = json.dumps({"tr_id": "t1", "meta": {"brackets": "}{][", "list": [1, [2, 3]]}},
                       indent=2)
    second = json.dumps([{"a": 1}, {"b": "x\"]"}], indent=4)
    text = f"{first}\n{second}\n"
    reader = JsonDocuments(text)
    # the first document is 8 lines long, so the second opens on line 9
    assert list(reader) == [(1, json.loads(first)), (first.count("\n") + 2, json.loads(second))]
    assert reader.layouts == {"multi-line JSON document": 2}


def test_documents_concatenated_on_one_line_are_each_read() -> None:
    assert docs('{"a": 1}{"b": 2} [3]\n{"c": 4}') == [(1, {"a": 1}), (1, {"b": 2}), (1, [3]),
                                                      (2, {"c": 4})]


def test_a_truncated_json_line_is_one_unreadable_document_and_the_next_lines_read() -> None:
    found = docs('{"tr_id": "broken", "state": \n{"a": 1}\n{"b": 2}\n')
    assert [position for position, _ in found] == [1, 2, 3]
    assert found[0][1].startswith("not JSON: Expecting value at line 1")
    assert found[1:] == [(2, {"a": 1}), (3, {"b": 2})]


def test_a_pretty_printed_document_that_never_closes_is_one_unreadable_document() -> None:
    broken = '{\n  "tr_id": "t1",\n  "size": \n'  # the file ends in the middle
    good = json.dumps({"tr_id": "t2"}, indent=2)
    found = docs(broken + good + "\n")
    assert len(found) == 2  # not one rejection per line
    assert found[0][0] == 1 and "does not close before line 4" in found[0][1]
    assert found[1] == (4, {"tr_id": "t2"})


def test_an_array_whose_elements_start_at_column_zero_is_one_document() -> None:
    assert docs('[\n{"a": 1},\n{"a": 2}\n]\n') == [(1, [{"a": 1}, {"a": 2}])]


def test_eot_separated_messages_are_numbered_by_message_and_may_be_pretty_printed() -> None:
    pretty = json.dumps({"tr_id": "t2", "size": 5}, indent=2)
    reader = JsonDocuments(f'{{"tr_id": "t1"}}\x04 {pretty} \x04\x04{{"tr_id": "t3"}}\n')
    assert list(reader) == [(1, {"tr_id": "t1"}), (2, {"tr_id": "t2", "size": 5}),
                            (4, {"tr_id": "t3"})]
    assert reader.layouts == {"EOT-separated message": 3}


@pytest.mark.parametrize(("raw", "positions"), [
    (b'{"a": 1}\r\n\r\n{"a": 2}', [1, 3]), (b'{"a": 1}\r{"a": 2}\r', [1, 2]),
    (b'\xef\xbb\xbf{"a": 1}\n', [1])], ids=["crlf", "cr", "bom"])
def test_line_ends_and_a_byte_order_mark_are_those_of_text(raw: bytes,
                                                          positions: list[int]) -> None:
    assert [position for position, _ in JsonDocuments(raw)] == positions


def test_nan_is_read_and_an_integer_past_64_bits_comes_as_a_float() -> None:
    found = docs('{"loss": NaN}\n{"bytes": 123456789012345678901234567890}\n')
    assert found[0][1]["loss"] != found[0][1]["loss"]  # NaN
    assert found[1][1]["bytes"] == pytest.approx(1.2345678901234568e29)


def test_a_later_part_of_a_batch_numbers_from_its_first_position() -> None:
    reader = JsonDocuments(b'{"a": 1}\n{"a": 2}\n', first_position=501)
    assert [position for position, _ in reader] == [501, 502]
    assert reader.opening is False  # a later part never opens the batch


def test_only_the_first_document_of_a_batch_opens_it() -> None:
    reader = JsonDocuments(b'[1]\n[2]\n')
    opening = [reader.opening for _ in reader]
    assert opening == [True, False]


def test_a_mapped_file_reads_like_its_bytes(tmp_path: Path) -> None:
    data = (json.dumps({"a": [1, 2]}, indent=2) + '\n{"b": 1}\n{broken\n{"c": 2}\n').encode()
    path = tmp_path / "batch"
    path.write_bytes(data)
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        assert list(JsonDocuments(mapped)) == list(JsonDocuments(data))


def test_envelopes_and_search_answers_are_told_apart() -> None:
    assert envelope({"data": {"x": 1}, "metadata": {"type": "gled"}}) == ({"x": 1}, True)
    assert envelope({"data": [1], "metadata": {}}) == ({"data": [1], "metadata": {}}, False)
    assert search_hits({"hits": {"hits": [1, 2]}}) == [1, 2]
    assert search_hits({"hits": [1]}) is None
