"""`wildcard_match` (IIS matchCriteria: whole value, '*' any run, no backtracking) against a regex
reference on generated inputs, and on the rule that made the regex version run for minutes."""

from __future__ import annotations

import re
import signal
from typing import Any, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.iis.mapping_rules import wildcard_match


def reference(pattern: str, value: str, case_sensitive: bool) -> bool:
    """The former implementation: a regex per pattern (right, but exponential on many stars)."""
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, value, re.DOTALL | (0 if case_sensitive else re.IGNORECASE)) is not None


SMALL = st.text(alphabet="ab*Aé\n", max_size=9)


@settings(max_examples=600, deadline=None)
@given(pattern=SMALL, value=st.text(alphabet="abAé\n*", max_size=10), case_sensitive=st.booleans())
def test_same_answers_as_the_regex(pattern: str, value: str, case_sensitive: bool) -> None:
    assert wildcard_match(pattern, value, case_sensitive) == reference(pattern, value, case_sensitive)


@pytest.mark.parametrize("pattern,value,expected", [
    ("Example Devices CA", "Example Devices CA", True),
    ("Example Devices CA", "Example Devices CA 2", False),  # whole value, not a search
    ("*Devices*", "Example Devices CA", True),
    ("Ex*CA", "ExCA", True),  # '*' also matches nothing
    ("a*a", "a", False),  # head and tail may not overlap
    ("a*b*b", "abb", True),
    ("a*b*b", "ab", False),
    ("*", "", True),
    ("", "", True),
    ("x*", "x\ny", True),  # line breaks too
    ("*.corp", "laptop.corp.evil", False),
])
def test_examples(pattern: str, value: str, expected: bool) -> None:
    assert wildcard_match(pattern, value) is expected


def test_case_insensitive_only_when_asked() -> None:
    assert wildcard_match("example*", "EXAMPLE Devices", case_sensitive=False)
    assert not wildcard_match("example*", "EXAMPLE Devices")


class _Hung(Exception):
    pass


@pytest.fixture
def bounded() -> Iterator[None]:
    """Fails the test instead of hanging the suite (the old regex took minutes here)."""

    def stop(signum: int, frame: Any) -> None:
        raise _Hung()

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(10)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_pathological_rule_is_answered(bounded: None) -> None:
    pattern = "*a" * 11 + "*b"
    value = "a" * 60
    assert wildcard_match(pattern, value) is False
    assert wildcard_match(pattern, value + "b") is True
    assert wildcard_match("*a" * 200, "a" * 10_000) is True
