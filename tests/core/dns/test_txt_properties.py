"""Property tests: a TXT value survives splitting into DNS character-strings and zone-file quoting,
whatever it holds, so a long DKIM record can never show as changed when it is not."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailu_core.dns import normalize_txt, txt_chunks, txt_presentation

# printable ASCII, quotes and backslashes included: what TXT values are made of
TXT_VALUES = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=2000)


@given(TXT_VALUES)
@settings(max_examples=300, deadline=None)
def test_chunks_are_at_most_255_bytes_and_join_back(value: str) -> None:
    chunks = txt_chunks(value)
    assert all(len(c) <= 255 for c in chunks)
    assert b"".join(chunks).decode() == value


@given(TXT_VALUES.filter(lambda v: v.strip() != ""))
@settings(max_examples=300, deadline=None)
def test_zone_file_quoting_round_trips(value: str) -> None:
    assert normalize_txt(txt_presentation(value)) == value
