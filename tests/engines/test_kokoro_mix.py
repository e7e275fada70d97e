import pytest

from api.engines.kokoro import parse_mix
from api.errors import InvalidRequestError


def test_parse_mix() -> None:
    assert parse_mix("af_heart") == [("af_heart", 1.0)]
    assert parse_mix("a+b(0.5)") == [("a", 1.0), ("b", 0.5)]
    assert parse_mix(" a (2) + b ( .25 ) ") == [("a", 2.0), ("b", 0.25)]


@pytest.mark.parametrize("spec", ["a+", "a+b(x)", "a b", "+".join(["v"] * 9), "a(0)"])
def test_bad_mix(spec: str) -> None:
    with pytest.raises(InvalidRequestError):
        parse_mix(spec)
