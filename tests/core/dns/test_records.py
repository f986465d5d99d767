"""Normal form: the same record spelled differently by different providers compares equal."""

from __future__ import annotations

import pytest

from mailu_core.dns import (
    Record,
    dkim_txt_value,
    normalize_txt,
    split_rrset,
    txt_chunks,
    txt_presentation,
    txt_slot,
)


def test_names_are_lowercase_without_trailing_dot() -> None:
    assert Record("Mail.Inlock.AI.", "a", 600, ("192.0.2.1",)) == Record(
        "mail.inlock.ai", "A", 600, ("192.0.2.1",)
    )


def test_long_dkim_split_in_255_byte_strings_equals_the_joined_value(rsa_public_pem: bytes) -> None:
    value = dkim_txt_value(rsa_public_pem)
    assert len(value) > 255
    chunks = txt_chunks(value)
    assert [len(c) for c in chunks[:-1]] == [255] * (len(chunks) - 1)
    quoted = " ".join(f'"{c.decode()}"' for c in chunks)
    split = Record("dkim._domainkey.inlock.ai", "TXT", 600, (quoted,))
    joined = Record("dkim._domainkey.inlock.ai", "TXT", 600, (value,))
    assert split == joined
    assert not split.differs(joined)
    assert normalize_txt(txt_presentation(value)) == value


@pytest.mark.parametrize(
    "spelled",
    [
        "v=spf1 mx ~all",
        '"v=spf1 mx ~all"',
        '"v=spf1 " "mx ~all"',
        '  "v=spf1 mx" " ~all"  ',
    ],
)
def test_txt_quotes_are_stripped_and_strings_joined(spelled: str) -> None:
    assert Record("inlock.ai", "TXT", 600, (spelled,)).value == "v=spf1 mx ~all"


def test_txt_escapes_are_undone() -> None:
    assert normalize_txt(r'"v=DKIM1\; k=rsa\; p=AB" "C\"D\\"') == 'v=DKIM1; k=rsa; p=ABC"D\\'
    assert normalize_txt(txt_presentation('a "quoted" \\ value')) == 'a "quoted" \\ value'


def test_values_are_canonical_and_unordered() -> None:
    a = Record("x.inlock.ai", "AAAA", 60, ("2001:0db8:0000::0001",))
    assert a.values == ("2001:db8::1",)
    mx = Record("inlock.ai", "MX", 60, ("20 MX2.inlock.ai.", "10 mail.inlock.ai"))
    assert mx == Record("inlock.ai", "MX", 60, ("10 mail.inlock.ai", "20 mx2.inlock.ai"))
    assert mx.mx() == [(10, "mail.inlock.ai"), (20, "mx2.inlock.ai")]


def test_ttl_and_provider_options_count_as_differences() -> None:
    a = Record("mail.inlock.ai", "A", 600, ("192.0.2.1",), (("cloudflare", (("proxied", False),)),))
    assert a.options("cloudflare") == {"proxied": False} and a.option("cloudflare", "proxied") is False
    assert a.differs(
        Record("mail.inlock.ai", "A", 300, ("192.0.2.1",)).with_options("cloudflare", proxied=False)
    )
    assert a.differs(a.with_options("cloudflare", proxied=True))
    assert str(a.with_options("cloudflare", proxied=True)).endswith("cloudflare.proxied=true")
    # an option only one side carries (another provider's, or none) never shows a difference
    assert not a.differs(Record("mail.inlock.ai", "A", 600, ("192.0.2.1",)))
    assert not a.differs(a.with_options("elsewhere", weight=3))


def test_provider_options_are_namespaced_hashable_and_order_free() -> None:
    one = Record("mail.inlock.ai", "A", 60, ("192.0.2.1",)).with_options("b", x=1).with_options("a", y=True)
    two = Record("mail.inlock.ai", "A", 60, ("192.0.2.1",)).with_options("a", y=True).with_options("b", x=1)
    assert (
        one == two
        and hash(one) == hash(two)
        and one.provider_options == (("a", (("y", True),)), ("b", (("x", 1),)))
    )
    assert Record("mail.inlock.ai", "A", 60, ("192.0.2.1",)).with_options("a").provider_options == ()


def test_txt_slots_separate_spf_from_other_txt() -> None:
    assert txt_slot("inlock.ai", "v=spf1 -all") == "spf1"
    assert txt_slot("inlock.ai", "V=SPF1 -all") == "spf1"
    assert txt_slot("inlock.ai", "google-site-verification=abc").startswith("h:")
    assert txt_slot("_dmarc.inlock.ai", "anything") == "dmarc1"
    assert txt_slot("dkim._domainkey.inlock.ai", "k=rsa; p=AB") == "dkim1"
    recs = split_rrset("inlock.ai", "TXT", 600, ["v=spf1 -all", "token=1"])
    assert len(recs) == 2 and recs[0].key != recs[1].key


def test_txt_records_hold_one_value() -> None:
    with pytest.raises(ValueError, match="one value per TXT"):
        Record("inlock.ai", "TXT", 600, ("a", "b"))
    with pytest.raises(ValueError, match="MX value"):
        Record("inlock.ai", "MX", 600, ("mail.inlock.ai",))
