import pytest
from hypothesis import given
from hypothesis import strategies as st

from appinfra.render.interpolate import MissingVariables, interpolate


def test_values_defaults_and_escapes() -> None:
    data = {
        "a": "${HOST}",
        "b": "${PORT:5432}",
        "c": "$${LITERAL}",
        "d": "x-${HOST}-${EMPTY:}-y",
        "e": "${HOST:ignored}",
    }
    out = interpolate(data, {"HOST": "db"})
    assert out == {"a": "db", "b": "5432", "c": "${LITERAL}", "d": "x-db--y", "e": "db"}


def test_every_missing_variable_is_named_once_sorted() -> None:
    with pytest.raises(MissingVariables) as err:
        interpolate({"a": "${B} ${A}", "b": "${A}", "c": "${C:ok}"}, {})
    assert err.value.names == ["A", "B"]
    assert "A, B" in str(err.value)


@given(st.text(alphabet=st.characters(blacklist_characters="$"), max_size=50))
def test_text_without_dollar_is_unchanged(text: str) -> None:
    assert interpolate({"k": text}, {}) == {"k": text}


@given(st.dictionaries(st.from_regex(r"[A-Z][A-Z0-9_]{0,8}", fullmatch=True), st.text(max_size=20)))
def test_each_reference_becomes_its_value(variables: dict[str, str]) -> None:
    data = {name: "${" + name + "}" for name in variables}
    assert interpolate(data, variables) == variables
