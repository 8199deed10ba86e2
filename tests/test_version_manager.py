"""SemVer 2.0.0 parsing, precedence, byte keys, compatibility and npm ranges (DESIGN.md §5)."""
from __future__ import annotations

import functools
import itertools

import pytest
import semver
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from errors import InvalidArgument
from registry.version_manager import (
    VersionManager,
    compare,
    format_version,
    is_compatible,
    looks_like_range,
    parse_range,
    parse_version,
    precedence_key,
    sort_versions,
)
from tests.conftest import examples

# Every precedence example of semver.org §11, in ascending order.
SPEC_ORDER = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "2.0.0",
    "2.1.0",
    "2.1.1",
]


def sign(x: int) -> int:
    return (x > 0) - (x < 0)


# ----------------------------------------------------------------------- seed usage


def test_seed_usage():
    vm = VersionManager()
    assert vm.is_newer("1.1.0", "1.0.0") is True
    assert vm.is_compatible("1.0.0", "1.5.0") is True
    assert vm.get_latest_version(["1.0.0", "1.1.0", "1.0.5"]) == "1.1.0"
    assert vm.increment_version("1.0.0", "minor") == "1.1.0"


# ----------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "text",
    ["0.0.0", "1.0.0", "10.20.30", "1.0.0-0", "1.0.0-alpha.1", "1.0.0-0a.b-c", "1.0.0-x-y-z.--",
     "1.0.0+001", "1.0.0-rc.1+build.1.2", "1.0.0+21AF26D3----117B344092BD",
     f"{2**63 - 1}.{2**63 - 1}.{2**63 - 1}"],
)
def test_valid_versions_round_trip(text):
    v = parse_version(text)
    assert isinstance(v, semver.Version)
    assert format_version(v) == format_version(text) == text


def test_parsed_fields():
    v = parse_version("1.2.3-rc.1+build.5")
    assert (v.major, v.minor, v.patch, v.prerelease, v.build) == (1, 2, 3, "rc.1", "build.5")


@pytest.mark.parametrize(
    "text",
    ["1.0", "1", "01.0.0", "1.01.0", "1.0.01", "v1.0.0", "V1.0.0", "=1.0.0", "1.0.0-", "1.0.0+",
     "1.0.0-01", "1.0.0-rc.01", "1.0.0-a..b", "1.0.0+a..b", "1.0.0-a_b", " 1.0.0", "1.0.0 ",
     "1.0.0\n", "", "1.0.0.0", "a.b.c", "-1.0.0", "1.0.0-rc.1+b+c", "1.0.0-é",
     "1\u0661.0.0", "1.0.0-\u0661", "\uff11.0.0"],
)
def test_invalid_versions_show_the_valid_form(text):
    with pytest.raises(InvalidArgument) as err:
        parse_version(text)
    message = str(err.value)
    assert repr(text) in message
    assert "MAJOR.MINOR.PATCH" in message and "'1.0.0'" in message
    assert "no 'v' prefix" in message and "no leading zeros" in message
    assert err.value.code == "INVALID_ARGUMENT" and isinstance(err.value, ValueError)


@pytest.mark.parametrize("value", [None, 1, 1.0, b"1.0.0", ["1.0.0"]])
def test_non_strings_are_rejected(value):
    with pytest.raises(InvalidArgument, match="must be a string"):
        parse_version(value)


@pytest.mark.parametrize(
    "text",
    [f"{2**63}.0.0", f"0.{2**63}.0", f"0.0.{2**63}", f"{10**40}.0.0"],
)
def test_components_must_fit_a_signed_64_bit_integer(text):
    with pytest.raises(InvalidArgument, match=r"below 2\*\*63"):
        parse_version(text)


def test_too_long_is_rejected_with_the_reason():
    text = "1.0.0-" + "a" * 250
    assert len(text) == 256
    with pytest.raises(InvalidArgument, match="longer than the maximum of 255") as err:
        parse_version(text)
    assert len(str(err.value)) < 200  # the input is clipped in the message
    parse_version(text[:-1])  # 255 characters is fine
    with pytest.raises(InvalidArgument, match="longer than"):
        parse_version("1.0.0-" + "1" * 300)  # a huge numeric pre-release identifier


def test_version_objects_are_validated_too():
    with pytest.raises(InvalidArgument, match=r"below 2\*\*63"):
        precedence_key(semver.Version(2**63, 0, 0))
    assert format_version(semver.Version(1, 2, 3, "rc.1", "b")) == "1.2.3-rc.1+b"


# ----------------------------------------------------------------------- precedence


def test_semver_org_precedence_examples():
    for lower, higher in itertools.combinations(SPEC_ORDER, 2):
        assert compare(lower, higher) == -1, (lower, higher)
        assert compare(higher, lower) == 1, (higher, lower)
        assert precedence_key(lower) < precedence_key(higher), (lower, higher)
    for v in SPEC_ORDER:
        assert compare(v, v) == 0


def test_sort_versions_newest_first_by_default():
    shuffled = ["2.1.0", "1.0.0-beta.11", "1.0.0", "1.0.0-alpha", "2.1.1", "1.0.0-beta.2",
                "1.0.0-rc.1", "2.0.0", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-alpha.1"]
    assert sort_versions(shuffled) == SPEC_ORDER[::-1]
    assert sort_versions(shuffled, newest_first=False) == SPEC_ORDER
    assert VersionManager().sort(shuffled, newest_first=False) == SPEC_ORDER
    assert sort_versions([]) == []


def test_build_metadata_is_ignored_for_precedence():
    assert compare("1.0.0+a", "1.0.0+b") == 0
    assert compare("1.0.0+a", "1.0.0") == 0
    assert compare("1.0.0-rc.1+zzz", "1.0.0-rc.2+aaa") == -1
    assert precedence_key("1.0.0+a") == precedence_key("1.0.0+b") == precedence_key("1.0.0")
    assert precedence_key("1.0.0-rc.1+x") == precedence_key("1.0.0-rc.1")


def test_sort_is_stable_and_keeps_the_input_strings():
    versions = ["1.0.0+b", "0.9.0", "1.0.0+a", "1.0.0"]
    assert sort_versions(versions) == ["1.0.0+b", "1.0.0+a", "1.0.0", "0.9.0"]
    assert sort_versions(versions, newest_first=False) == ["0.9.0", "1.0.0+b", "1.0.0+a", "1.0.0"]


def test_precedence_key_layout():
    head = (1).to_bytes(8, "big") + (2).to_bytes(8, "big") + (3).to_bytes(8, "big")
    assert precedence_key("1.2.3") == head + b"\xff"
    assert precedence_key("1.2.3-rc.10") == head + b"\x02rc\x00" + b"\x01\x0210" + b"\x00"
    assert len(precedence_key("0.0.0")) == 25


@pytest.mark.parametrize(
    "lower, higher",
    [("1.0.0-2", "1.0.0-10"), ("1.0.0-99", "1.0.0-a"), ("1.0.0-a", "1.0.0-a.0"),
     ("1.0.0-A", "1.0.0-a"), ("1.0.0-a", "1.0.0-aa"), ("1.0.0-a.b", "1.0.0-a-b"),
     ("1.0.0-0a", "1.0.0-a"), ("1.0.0-rc.1", "1.0.0"), ("1.0.0", "1.0.1-0"),
     ("1.2.3", "1.10.0"), (f"{2**63 - 2}.0.0", f"{2**63 - 1}.0.0"),
     ("1.0.0-" + "9" * 20, "1.0.0-1" + "0" * 20)],
)
def test_precedence_edge_cases(lower, higher):
    assert compare(lower, higher) == -1
    assert precedence_key(lower) < precedence_key(higher)


def test_invalid_versions_raise_everywhere():
    vm = VersionManager()
    for call in (lambda: compare("1.0", "1.0.0"), lambda: precedence_key("v1.0.0"),
                 lambda: sort_versions(["1.0.0", "01.0.0"]), lambda: is_compatible("1", "1.0.0"),
                 lambda: vm.is_newer("1.0.0", "1.0"), lambda: vm.get_latest_version(["x"]),
                 lambda: vm.parse("1.0.0-"), lambda: parse_range("^1.0.0").match("1.0")):
        with pytest.raises(InvalidArgument):
            call()


# ----------------------------------------------------------------------- compatibility


@pytest.mark.parametrize(
    "a, b, expected",
    [("1.0.0", "1.5.0", True), ("1.0.0", "1.0.9", True), ("1.9.9", "1.0.0", True),
     ("1.0.0", "2.0.0", False), ("2.3.4", "1.3.4", False),
     ("1.0.0-rc.1", "1.2.0", True), ("1.0.0+b", "1.0.0", True),
     ("0.1.0", "0.1.5", True), ("0.1.0", "0.2.0", False), ("0.2.3", "0.2.0", True),
     ("0.1.0", "1.1.0", False),
     ("0.0.1", "0.0.1", True), ("0.0.1", "0.0.2", False), ("0.0.3", "0.0.3-rc.1", True),
     ("0.0.1", "0.1.1", False), ("0.0.1", "1.0.1", False)],
)
def test_is_compatible_table(a, b, expected):
    assert is_compatible(a, b) is expected
    assert is_compatible(b, a) is expected
    assert VersionManager().is_compatible(a, b) is expected


# ----------------------------------------------------------------------- VersionManager


@pytest.mark.parametrize(
    "version, part, expected",
    [("1.0.0", "patch", "1.0.1"), ("1.0.0", "minor", "1.1.0"), ("1.0.0", "major", "2.0.0"),
     ("1.2.3", "minor", "1.3.0"), ("1.2.3", "major", "2.0.0"),
     ("1.2.3-rc.1+b.7", "patch", "1.2.4"), ("1.2.3-rc.1+b.7", "minor", "1.3.0"),
     ("1.2.3-rc.1+b.7", "major", "2.0.0"), ("1.2.3+b", "patch", "1.2.4"),
     ("1.0.0-rc.1", "prerelease", "1.0.0-rc.2"), ("1.0.0-rc.9", "prerelease", "1.0.0-rc.10"),
     ("1.0.0-7", "prerelease", "1.0.0-8"), ("1.0.0-rc.1+b", "prerelease", "1.0.0-rc.2"),
     ("1.0.0", "prerelease", "1.0.1-rc.1")],
)
def test_increment_version(version, part, expected):
    vm = VersionManager()
    assert vm.increment_version(version, part) == expected
    assert vm.is_newer(expected, version)


def test_increment_version_default_part_and_errors():
    vm = VersionManager()
    assert vm.increment_version("1.0.0") == "1.0.1"
    assert vm.increment_version(semver.Version(1, 0, 0)) == "1.0.1"
    for bad in ("build", "Major", "", None):
        with pytest.raises(InvalidArgument, match="major, minor, patch, prerelease"):
            vm.increment_version("1.0.0", bad)
    with pytest.raises(InvalidArgument):
        vm.increment_version("1.0", "patch")
    with pytest.raises(InvalidArgument, match=r"below 2\*\*63"):
        vm.increment_version(f"{2**63 - 1}.0.0", "major")


def test_get_latest_version():
    vm = VersionManager()
    assert vm.get_latest_version([]) is None
    assert vm.get_latest_version(iter(["1.0.0", "2.0.0-rc.1", "1.5.0"])) == "2.0.0-rc.1"
    assert vm.get_latest_version(["1.0.0", "2.0.0-rc.1", "1.5.0"],
                                 include_prerelease=False) == "1.5.0"
    assert vm.get_latest_version(["1.0.0-alpha", "1.0.0-beta"], include_prerelease=False) is None
    assert vm.get_latest_version(["1.0.0-beta.11", "1.0.0-beta.2"]) == "1.0.0-beta.11"
    assert vm.get_latest_version(["1.0.0-rc.1", "1.0.0"]) == "1.0.0"
    assert vm.get_latest_version(["1.9.0", "1.10.0", "1.2.0"]) == "1.10.0"
    assert vm.get_latest_version(["1.0.0+b", "1.0.0+a"]) == "1.0.0+b"  # first of equals


def test_thin_methods():
    vm = VersionManager()
    assert vm.parse("1.2.3") == semver.Version(1, 2, 3)
    assert vm.compare("1.0.0", "1.0.1") == -1
    assert vm.is_newer("1.0.0", "1.0.0+b") is False
    assert vm.is_newer("1.0.0", "1.0.0-rc.1") is True
    assert vm.matches("1.4.0", "^1.2") is True
    assert vm.matches("2.0.0", "^1.2") is False


# ----------------------------------------------------------------------- ranges

RANGE_CASES = [
    # caret
    ("^1.2", "1.2.0", True), ("^1.2", "1.9.0", True), ("^1.2", "2.0.0", False),
    ("^1.2", "1.1.9", False), ("^1.2.3", "1.2.3", True), ("^1.2.3", "1.2.2", False),
    ("^0.2.3", "0.2.9", True), ("^0.2.3", "0.3.0", False), ("^0.0.3", "0.0.3", True),
    ("^0.0.3", "0.0.4", False), ("^0.x", "0.9.0", True), ("^0.x", "1.0.0", False),
    # tilde
    ("~1.2.3", "1.2.3", True), ("~1.2.3", "1.2.9", True), ("~1.2.3", "1.3.0", False),
    ("~1.2.3", "1.2.2", False), ("~1.2", "1.2.7", True), ("~1", "1.9.9", True),
    ("~1", "2.0.0", False),
    # x-ranges
    ("1.x", "1.0.0", True), ("1.x", "1.99.3", True), ("1.x", "2.0.0", False),
    ("1.x", "0.9.0", False), ("1.2.x", "1.2.5", True), ("1.2.x", "1.3.0", False),
    ("1.X", "1.4.0", True), ("1.*", "1.4.0", True), ("*", "0.0.1", True), ("x", "9.9.9", True),
    ("1.2", "1.2.7", True), ("1", "1.5.0", True),
    # primitives
    (">=1.0.0 <2.0.0", "1.0.0", True), (">=1.0.0 <2.0.0", "1.99.0", True),
    (">=1.0.0 <2.0.0", "2.0.0", False), (">=1.0.0 <2.0.0", "0.9.9", False),
    (">1.2.3", "1.2.3", False), (">1.2.3", "1.2.4", True), ("<=1.2.3", "1.2.3", True),
    ("=1.2.3", "1.2.3", True), ("1.2.3", "1.2.3+build", True), ("1.2.3", "1.2.4", False),
    # hyphen ranges (inclusive; a partial upper bound means "up to that line")
    ("1.2.3 - 2.3.4", "1.2.3", True), ("1.2.3 - 2.3.4", "2.3.4", True),
    ("1.2.3 - 2.3.4", "2.3.5", False), ("1.2.3 - 2.3.4", "1.2.2", False),
    ("1.2.3 - 2.3", "2.3.9", True), ("1.2.3 - 2.3", "2.4.0", False), ("1.2 - 2", "2.9.9", True),
    # ||
    ("^1.0.0 || ^3.0.0", "1.5.0", True), ("^1.0.0 || ^3.0.0", "3.1.0", True),
    ("^1.0.0 || ^3.0.0", "2.0.0", False), ("1.2.7 || >=1.2.9 <2.0.0", "1.2.7", True),
    ("1.2.7 || >=1.2.9 <2.0.0", "1.2.8", False), ("1.2.7 || >=1.2.9 <2.0.0", "1.4.6", True),
    # npm's pre-release rule: a pre-release only matches a set that names a pre-release of the
    # same MAJOR.MINOR.PATCH
    ("*", "1.0.0-rc.1", False), ("1.x", "1.5.0-rc.1", False), ("^1.2", "1.9.0-beta", False),
    (">=1.0.0 <2.0.0", "1.5.0-rc.1", False), ("<2.0.0", "2.0.0-rc.1", False),
    ("<=2.0.0", "2.0.0-rc.1", False), (">=0.0.0", "0.0.1-0", False),
    (">1.2.3-alpha.3", "1.2.3-alpha.7", True), (">1.2.3-alpha.3", "1.2.3-alpha.3", False),
    (">1.2.3-alpha.3", "3.4.5-alpha.9", False), (">1.2.3-alpha.3", "3.4.5", True),
    (">1.2.3-alpha.3", "1.2.3", True),
    (">=1.2.3-alpha.1", "1.2.3-alpha.1", True), (">=1.2.3-alpha.1", "1.2.4-alpha", False),
    ("^1.2.3-beta.2", "1.2.3-beta.4", True), ("^1.2.3-beta.2", "1.2.3-beta.1", False),
    ("^1.2.3-beta.2", "1.2.4-beta.2", False), ("^1.2.3-beta.2", "1.9.0", True),
    ("~1.2.3-beta.2", "1.2.3-beta.4", True), ("~1.2.3-beta.2", "1.2.4-beta.2", False),
    ("1.2.3-rc.1", "1.2.3-rc.1", True), ("1.2.3-rc.1", "1.2.3", False),
    ("1.2.3-rc.1", "1.2.3-rc.2", False),
    ("<0.1.1-alpha.1", "0.1.1-beta.1", False), ("<1.0.0-rc.1", "1.0.0-rc.0", True),
    ("<=1.2.3-rc.1", "1.2.3", False), ("<=1.2.3-rc.1", "1.2.2", True),
    (">=1.0.0-rc.1 <1.0.0-rc.5", "1.0.0-rc.3", True),
    (">=1.0.0-rc.1 <1.0.0-rc.5", "1.0.0-rc.5", False),
    ("1.2.3-beta.2 - 1.2.3-beta.9", "1.2.3-beta.10", False),
    ("1.2.3-beta.2 - 1.2.3-beta.9", "1.2.3", False),
    ("1.2.3-rc.1 || 2.x", "1.2.3-rc.1", True), ("1.2.3-rc.1 || 2.x", "2.1.0-rc.1", False),
]


@pytest.mark.parametrize("range_text, version, expected", RANGE_CASES)
def test_npm_ranges(range_text, version, expected):
    assert parse_range(range_text).match(version) is expected


def test_range_object():
    r = parse_range("^1.2")
    assert str(r) == "^1.2" and repr(r) == "VersionRange('^1.2')"
    assert r.match(semver.Version(1, 3, 0)) is True


@pytest.mark.parametrize(
    "text",
    ["", "   ", "garbage", "^", ">=", "1.2.3.4", ">=01.0.0", "1.0.0 - ", "1.2.3 - ^2.0.0",
     "1.0.0 - 2.0.0 - 3.0.0", "~>1.0", "a || b", ">x", "1.2.3-01", "1.x-rc.1", "x" * 2000],
)
def test_invalid_ranges(text):
    with pytest.raises(InvalidArgument, match="invalid version range") as err:
        parse_range(text)
    assert len(str(err.value)) < 300
    assert looks_like_range(text) is False


def test_invalid_range_messages_show_the_syntax():
    with pytest.raises(InvalidArgument, match=r"'\^1\.2\.0'.*'1\.2\.3 - 2\.3\.4'"):
        parse_range("garbage")
    with pytest.raises(InvalidArgument, match="empty"):
        parse_range("")
    with pytest.raises(InvalidArgument, match="must be a string"):
        parse_range(None)


@pytest.mark.parametrize(
    "text, expected",
    [("^1.2", True), ("~1.2.3", True), ("1.x", True), ("*", True), (">=1.0.0 <2.0.0", True),
     ("1.2.3 - 2.3.4", True), ("^1 || ^2", True), ("1.2", True), ("1", True),
     ("1.0.0", False), ("1.0.0-rc.1+b", False), ("latest", False), ("production", False),
     ("1.0.0-01", False), ("", False), ("01.0.0", False)],
)
def test_looks_like_range(text, expected):
    assert looks_like_range(text) is expected


# ----------------------------------------------------------------------- properties

_numbers = st.one_of(st.integers(0, 12), st.integers(0, 2**63 - 1)).map(str)
_numeric_id = st.one_of(st.integers(0, 12), st.integers(0, 10**40)).map(str)
_alnum_id = st.text("abAZ-09", min_size=1, max_size=4).filter(lambda s: not s.isdigit())
_prerelease = st.lists(st.one_of(_numeric_id, _alnum_id), min_size=1, max_size=4).map(".".join)
_build = st.lists(st.text("aZ09-", min_size=1, max_size=4), min_size=1, max_size=3).map(".".join)


@st.composite
def semver_strings(draw, build=True):
    text = ".".join(draw(_numbers) for _ in range(3))
    if draw(st.booleans()):
        text += "-" + draw(_prerelease)
    if build and draw(st.booleans()):
        text += "+" + draw(_build)
    assume(len(text) <= 255)
    return text


PROPERTY = settings(max_examples=examples(150), deadline=None, database=None)


def spec_key(text: str):
    """An independent reading of semver.org §11, to check the library and the byte key."""
    core, _, pre = text.split("+")[0].partition("-")
    ids = [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")] if pre else []
    return tuple(map(int, core.split("."))), (not pre), ids


@PROPERTY
@given(semver_strings())
def test_round_trip(text):
    assert format_version(parse_version(text)) == text
    assert parse_version(format_version(text)) == parse_version(text)


@PROPERTY
@given(semver_strings(), semver_strings())
def test_compare_matches_the_spec_and_the_key(a, b):
    expected = sign((spec_key(a) > spec_key(b)) - (spec_key(a) < spec_key(b)))
    assert compare(a, b) == expected
    assert compare(b, a) == -expected
    ka, kb = precedence_key(a), precedence_key(b)
    assert sign((ka > kb) - (ka < kb)) == expected


@PROPERTY
@given(semver_strings(build=False), _build, _build)
def test_build_metadata_never_changes_precedence(text, b1, b2):
    assert compare(f"{text}+{b1}", f"{text}+{b2}") == 0
    assert precedence_key(f"{text}+{b1}") == precedence_key(text)


@settings(PROPERTY, max_examples=examples(100))
@given(st.lists(semver_strings(), max_size=8))
def test_compare_is_a_total_order(versions):
    ordered = sorted(versions, key=functools.cmp_to_key(compare))
    for i, j in itertools.combinations(range(len(ordered)), 2):
        assert compare(ordered[i], ordered[j]) <= 0  # transitive: consistent with the sort
    assert sort_versions(versions, newest_first=False) == sorted(versions, key=precedence_key)
    assert [precedence_key(v) for v in sort_versions(versions, newest_first=False)] == \
        [precedence_key(v) for v in ordered]
    for v in versions:
        assert compare(v, v) == 0


@PROPERTY
@given(semver_strings(), st.sampled_from(["major", "minor", "patch", "prerelease"]))
def test_increment_always_gives_a_newer_version(text, part):
    vm = VersionManager()
    try:
        bumped = vm.increment_version(text, part)
    except InvalidArgument:  # 2**63 - 1 bumped, or an identifier grown past 255 characters
        return
    assert vm.is_newer(bumped, text)
    assert "+" not in bumped
