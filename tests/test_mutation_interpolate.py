"""``${VAR}`` references and ``*_file`` secrets exactly as users write them (issue 15): every
problem with its key path and its message, the limits at their boundaries, files on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuya_events.config import interpolate as interp
from tuya_events.config.interpolate import (
    MAX_INTERPOLATED,
    MAX_SECRET_FILE_BYTES,
    SecretFileError,
    interpolate,
    is_utf8,
    read_secret_file,
    resolve_secret_files,
)


def run(node: object, environ: dict[str, str]) -> tuple[object, list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    return interpolate(node, environ, problems), problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${A}", "alpha"),
        ("x-${A}-${B}-y", "x-alpha-beta-y"),
        ("${UNSET:-fallback}", "fallback"),
        ("${UNSET:-}", ""),
        ("${A:-fallback}", "alpha"),
        ("${EMPTY:-fallback}", ""),  # set but empty is set
        ("$${A}", "${A}"),
        ("$${A} and ${A}", "${A} and alpha"),
        ("cost: $5", "cost: $5"),
        ("$A", "$A"),
        ("no references", "no references"),
    ],
)
def test_references_are_replaced(text: str, expected: str) -> None:
    assert run(text, {"A": "alpha", "B": "beta", "EMPTY": ""}) == (expected, [])


def test_the_whole_tree_is_walked_with_key_paths_in_problems() -> None:
    tree = {"a": {"b": ["${A}", "${NOPE}", 3, None]}, "c": "${ALSO_NOPE}", "d": True}
    result, problems = run(tree, {"A": "x"})
    assert result == {"a": {"b": ["x", "", 3, None]}, "c": "", "d": True}
    assert problems == [
        ("a.b[1]", "environment variable NOPE is not set"),
        ("c", "environment variable ALSO_NOPE is not set"),
    ]


def test_a_variable_that_is_not_utf8_is_a_problem_not_a_value() -> None:
    result, problems = run({"k": "x${BAD}y"}, {"BAD": "caf\udce9"})
    assert result == {"k": "xy"}
    assert problems == [("k", "environment variable BAD is not UTF-8 text")]
    assert is_utf8("café") and not is_utf8("caf\udce9")


def test_references_add_16_mib_in_all_and_the_excess_is_reported_once() -> None:
    assert MAX_INTERPOLATED == 16 << 20
    big = "x" * (1 << 20)
    node = ["${BIG}"] * 17
    result, problems = run(node, {"BIG": big})
    assert result[:16] == [big] * 16 and result[16] == ""  # type: ignore[index]
    assert problems == [("[16]", "environment references add more than 16 MiB in all")]


def test_one_budget_is_shared_by_a_whole_tree() -> None:
    budget = interp._Budget(remaining=8)
    problems: list[tuple[str, str]] = []
    assert interpolate({"a": "${A}", "b": ["${A}"]}, {"A": "1234"}, problems, (), budget) == {
        "a": "1234",
        "b": ["1234"],
    }
    assert budget.remaining == 0 and problems == []
    assert budget.spend(0) and not budget.spend(1)


# -- secret files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "secret"),
    [
        (b"s3cret\n", "s3cret"),
        (b"s3cret\r\n", "s3cret"),
        (b"s3cret\n\n", "s3cret"),
        (b"\xef\xbb\xbfs3cret\n", "s3cret"),
        (b"  s3cret  ", "  s3cret  "),  # blanks may be part of a secret
        (b"line1\nline2\n", "line1\nline2"),
    ],
    ids=["lf", "crlf", "two newlines", "bom", "blanks kept", "inner newline kept"],
)
def test_a_secret_file_is_read_without_its_trailing_newline(
    tmp_path: Path, content: bytes, secret: str
) -> None:
    path = tmp_path / "secret"
    path.write_bytes(content)
    assert read_secret_file(str(path)) == secret


def test_a_secret_file_may_be_64_kib_and_no_more(tmp_path: Path) -> None:
    assert MAX_SECRET_FILE_BYTES == 64 << 10
    path = tmp_path / "secret"
    path.write_bytes(b"a" * MAX_SECRET_FILE_BYTES)
    assert len(read_secret_file(str(path))) == MAX_SECRET_FILE_BYTES
    path.write_bytes(b"a" * (MAX_SECRET_FILE_BYTES + 1))
    with pytest.raises(SecretFileError) as caught:
        read_secret_file(str(path))
    assert str(caught.value) == f"{path} is larger than 64 KiB: not a secret file"


def test_a_secret_file_that_is_not_utf8_is_refused_without_its_content(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"\xffhidden")
    with pytest.raises(SecretFileError) as caught:
        read_secret_file(str(path))
    assert str(caught.value) == f"{path} is not UTF-8 text"


def resolve(section: object, tmp: Path) -> tuple[object, list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    resolve_secret_files(section, ("secret", "token"), problems, ("handlers", 0))
    return section, problems


def test_each_secret_key_may_come_from_its_file(tmp_path: Path) -> None:
    (tmp_path / "s").write_text("from-file-1\n")
    (tmp_path / "t").write_text("from-file-2\n")
    section = {"secret_file": str(tmp_path / "s"), "token_file": str(tmp_path / "t"), "x": 1}
    assert resolve(section, tmp_path) == (
        {"secret": "from-file-1", "token": "from-file-2", "x": 1},
        [],
    )


@pytest.mark.parametrize("given", [None, ""], ids=["null", "empty"])
def test_an_empty_value_beside_its_file_is_no_conflict(tmp_path: Path, given: object) -> None:
    (tmp_path / "s").write_text("from-file\n")
    section = {"secret": given, "secret_file": str(tmp_path / "s")}
    assert resolve(section, tmp_path) == ({"secret": "from-file"}, [])


def test_each_secret_file_problem_is_named_at_its_key(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"\n")
    (tmp_path / "s").write_text("x")
    missing, empty = tmp_path / "missing", tmp_path / "empty"
    both = "give either secret or secret_file, not both"
    cases = [
        ({"secret": "v", "secret_file": str(tmp_path / "s")}, both),
        ({"secret_file": 5}, "must be a file path"),
        ({"secret_file": ""}, "must be a file path"),
        ({"secret_file": str(missing)}, f"cannot read {missing}: No such file or directory"),
        ({"secret_file": str(empty)}, f"{empty} is empty"),
    ]  # fmt: skip
    for section, problem in cases:
        assert resolve(section, tmp_path)[1] == [("handlers[0].secret_file", problem)], section


def test_a_secret_file_error_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "s"
    path.write_bytes(b"\xff")
    section, problems = resolve({"token_file": str(path)}, tmp_path)
    assert problems == [("handlers[0].token_file", f"{path} is not UTF-8 text")]
    assert section == {}


def test_a_section_that_is_not_a_mapping_is_left_alone(tmp_path: Path) -> None:
    assert resolve(["secret_file"], tmp_path) == (["secret_file"], [])
    assert resolve({"other_file": "/x"}, tmp_path) == ({"other_file": "/x"}, [])


def test_a_secret_ending_in_any_other_character_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"XsecretX\n")
    assert read_secret_file(str(path)) == "XsecretX"


def test_a_problem_with_one_secret_file_does_not_stop_the_next(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("token-value\n")
    bad = tmp_path / "bad"
    bad.write_bytes(b"\xff")
    first_problems = [
        {"secret": "v", "secret_file": str(tmp_path / "t")},  # both given
        {"secret_file": 5},  # not a path
        {"secret_file": str(tmp_path / "missing")},  # cannot be read
        {"secret_file": str(bad)},  # not UTF-8
    ]
    for first in first_problems:
        section, problems = resolve({**first, "token_file": str(tmp_path / "t")}, tmp_path)
        assert section["token"] == "token-value", first  # type: ignore[index]
        assert [where for where, _ in problems] == ["handlers[0].secret_file"], first
