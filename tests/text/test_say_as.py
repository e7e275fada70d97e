import pytest

from api.errors import InvalidRequestError
from api.text.say_as import SayAsError, interpret, is_supported, year_words


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("characters", "ABC", "A B C"),
        ("spell-out", "abc", "A B C"),
        ("verbatim", "a1", "A one"),
        ("characters", "me@x.io", "M E at X dot I O"),
        ("characters", "AB CD", "A B, C D"),
        ("cardinal", "12345", "twelve thousand three hundred forty-five"),
        ("cardinal", "12,345", "twelve thousand three hundred forty-five"),
        ("number", "0", "zero"),
        ("cardinal", "-3.14", "minus three point one four"),
        ("cardinal", "007", "seven"),
        ("cardinal", "1000000", "one million"),
        ("ordinal", "1", "first"),
        ("ordinal", "21", "twenty-first"),
        ("ordinal", "21st", "twenty-first"),
        ("ordinal", "100", "one hundredth"),
        ("digits", "123", "one two three"),
        ("digits", "0 4-2", "zero four two"),
        ("telephone", "555-1234", "five five five, one two three four"),
        ("telephone", "+1 (555) 123-4567", "plus one, five five five, one two three, four five six seven"),
        ("telephone", "1-800-FLOWERS", "one, eight zero zero, F L O W E R S"),
    ],
)
def test_readings(kind: str, value: str, expected: str) -> None:
    assert interpret(kind, value) == expected


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        ("2024-03-05", None, "March fifth, two thousand twenty-four"),
        ("3/5/2024", None, "March fifth, two thousand twenty-four"),
        ("05/03/2024", "dmy", "March fifth, two thousand twenty-four"),
        ("2024.03.05", "ymd", "March fifth, two thousand twenty-four"),
        ("20240305", "ymd", "March fifth, two thousand twenty-four"),
        ("March 5 2024", "mdy", "March fifth, two thousand twenty-four"),
        ("5 Mar 1999", "dmy", "March fifth, nineteen ninety-nine"),
        ("1999-12", "ym", "December nineteen ninety-nine"),
        ("12/31", "md", "December thirty-first"),
        ("1905", "y", "nineteen oh five"),
        ("1900", "y", "nineteen hundred"),
        ("7", "m", "July"),
        ("3/5/05", None, "March fifth, oh five"),
        ("2/29/2024", None, "February twenty-ninth, two thousand twenty-four"),
    ],
)
def test_dates(value: str, fmt: str | None, expected: str) -> None:
    assert interpret("date", value, format=fmt) == expected


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        ("14:30", None, "two thirty PM"),
        ("9:05", None, "nine oh five AM"),
        ("9:05am", None, "nine oh five AM"),
        ("2:30 p.m.", None, "two thirty PM"),
        ("14:00", None, "two PM"),
        ("00:00", None, "twelve AM"),
        ("12:15", "hms12", "twelve fifteen PM"),
        ("12:00:15", None, "twelve PM and fifteen seconds"),
        ("14:30", "hms24", "fourteen thirty"),
        ("14:00", "24", "fourteen hundred"),
        ("2:30pm", "hm24", "fourteen thirty"),
    ],
)
def test_times(value: str, fmt: str | None, expected: str) -> None:
    assert interpret("time", value, format=fmt) == expected


def test_year_words() -> None:
    assert year_words(2024) == "two thousand twenty-four"
    assert year_words(1999) == "nineteen ninety-nine"
    assert year_words(1805) == "eighteen oh five"
    assert year_words(2100) == "twenty-one hundred"
    assert year_words(5, 2) == "oh five"


@pytest.mark.parametrize(
    ("kind", "value", "fmt"),
    [
        ("cardinal", "twelve", None),
        ("cardinal", "1" * 16, None),
        ("cardinal", "1.2.3", None),
        ("ordinal", "first", None),
        ("digits", "12a", None),
        ("date", "2023-02-29", None),
        ("date", "2024-13-01", None),
        ("date", "2024-03-32", None),
        ("date", "yesterday", None),
        ("date", "2024-03-05", "xyz"),
        ("date", "2024-03", "ymd"),
        ("time", "25:00", None),
        ("time", "14:61", None),
        ("time", "13:00 pm", None),
        ("time", "noon", None),
        ("telephone", "call me", None),
        ("telephone", "555;1234", None),
        ("telephone", "1" * 41, None),
        ("digits", "   ", None),
    ],
)
def test_bad_values_are_400_naming_the_element(kind: str, value: str, fmt: str | None) -> None:
    with pytest.raises(SayAsError) as info:
        interpret(kind, value, format=fmt)
    err = info.value
    assert isinstance(err, InvalidRequestError)
    assert err.status_code == 400
    assert err.code == "invalid_ssml"
    assert err.param == "input"
    assert f'<say-as interpret-as="{kind}">' in err.message


def test_other_languages_pass_through_unchanged() -> None:
    assert interpret("cardinal", "12345", lang="fr-FR") == "12345"
    assert interpret("date", " 2024-03-05 ", lang="zh") == "2024-03-05"
    assert interpret("telephone", "not a number", lang="de") == "not a number"
    assert interpret("cardinal", "12", lang="en-GB") == "twelve"
    assert interpret("cardinal", "12", lang="en_US") == "twelve"


def test_supported_values() -> None:
    for kind in ("characters", "spell-out", "cardinal", "ordinal", "digits", "date", "time", "telephone"):
        assert is_supported(kind)
        assert is_supported(kind.upper())
    assert not is_supported("currency")
    with pytest.raises(SayAsError):
        interpret("currency", "$5")


def test_expansion_is_bounded() -> None:
    # the largest accepted cardinal and a long digit run expand by a bounded factor
    assert len(interpret("cardinal", "9" * 15)) < 300
    assert len(interpret("digits", "9" * 1000)) == 1000 * len("nine ") - 1


def test_threads_get_the_same_readings() -> None:
    from concurrent.futures import ThreadPoolExecutor

    numbers = [str(n * 7919) for n in range(1, 400)]
    serial = [interpret("cardinal", n) for n in numbers]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda n: interpret("cardinal", n), numbers)) == serial


def test_inflect_is_imported_on_the_first_number_only() -> None:
    """The app does not pay inflect's import (~2 s, ~11 MB) until a say-as number needs it."""
    import subprocess
    import sys

    code = (
        "import sys, api.app, api.text.say_as as s\n"
        "assert 'inflect' not in sys.modules, 'imported with the app'\n"
        "assert s.interpret('cardinal', '42') == 'forty-two', s.interpret('cardinal', '42')\n"
        "assert 'inflect' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
