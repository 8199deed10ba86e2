"""Semantic versions for the registry (DESIGN.md §5).

SemVer 2.0.0 exactly (semver.org): parsing and precedence come from ``semver`` (python-semver 3),
npm-style ranges from ``semantic_version.NpmSpec``. Build metadata never affects precedence, so
two versions that differ only in build metadata are the same version.

``precedence_key`` turns a version into bytes whose bytewise order is SemVer precedence, so the
database can ``ORDER BY`` and paginate on a BLOB/bytea column instead of sorting in Python.
"""
from __future__ import annotations

import operator
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import semantic_version
import semver

from errors import InvalidArgument

__all__ = [
    "MAX_RANGE_LENGTH",
    "MAX_VERSION_LENGTH",
    "VersionManager",
    "VersionRange",
    "KeyInterval",
    "RangeIntervals",
    "compare",
    "format_version",
    "is_compatible",
    "looks_like_range",
    "parse_range",
    "parse_version",
    "precedence_key",
    "sort_versions",
]

VersionLike = str | semver.Version

MAX_VERSION_LENGTH = 255
MAX_RANGE_LENGTH = 1024
# MAJOR, MINOR and PATCH must fit a signed 64-bit integer (PostgreSQL bigint, 8-byte key fields).
_MAX_COMPONENT = 2**63
# The key stores a numeric pre-release identifier's digit count in one byte.
_MAX_NUMERIC_IDENTIFIER_DIGITS = 255

_VALID_FORM = (
    "expected MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD] such as '1.0.0' or '1.0.0-rc.1' "
    "(SemVer 2.0.0, no 'v' prefix, no leading zeros)"
)
_RANGE_FORM = (
    "expected an npm range such as '^1.2.0', '~1.2.3', '1.x', '>=1.0.0 <2.0.0', "
    "'1.2.3 - 2.3.4' or '^1.0.0 || ^2.0.0'"
)


def _clip(text: str, limit: int = 40) -> str:
    """``repr`` of ``text``, shortened so that error messages stay readable."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


# --------------------------------------------------------------------------- versions


def parse_version(text: str) -> semver.Version:
    """Parse a strict SemVer 2.0.0 string; anything else raises ``InvalidArgument``."""
    if not isinstance(text, str):
        raise InvalidArgument(
            f"invalid version {text!r}: must be a string, got {type(text).__name__}; {_VALID_FORM}"
        )
    if len(text) > MAX_VERSION_LENGTH:
        raise InvalidArgument(
            f"invalid version {_clip(text)}: {len(text)} characters, "
            f"longer than the maximum of {MAX_VERSION_LENGTH}"
        )
    try:
        # isascii: semver's pattern uses \d, which would also accept non-ASCII digits.
        if not text.isascii():
            raise ValueError(text)
        version = semver.Version.parse(text)
    except ValueError:
        raise InvalidArgument(f"invalid version {_clip(text)}: {_VALID_FORM}") from None
    if max(version.major, version.minor, version.patch) >= _MAX_COMPONENT:
        raise InvalidArgument(
            f"invalid version {_clip(text)}: MAJOR, MINOR and PATCH must each be below 2**63"
        )
    if any(
        part.isdigit() and len(part) > _MAX_NUMERIC_IDENTIFIER_DIGITS
        for part in (version.prerelease or "").split(".")
    ):  # Unreachable while MAX_VERSION_LENGTH is 255; kept because the key format relies on it.
        raise InvalidArgument(
            f"invalid version {_clip(text)}: a numeric pre-release identifier has more than "
            f"{_MAX_NUMERIC_IDENTIFIER_DIGITS} digits"
        )
    return version


def _as_version(v: VersionLike) -> semver.Version:
    """Validate a string or a ``semver.Version`` (which may have been built with looser rules)."""
    return parse_version(str(v) if isinstance(v, semver.Version) else v)


def format_version(v: VersionLike) -> str:
    """The canonical text of a version (validated)."""
    return str(_as_version(v))


def precedence_key(v: VersionLike) -> bytes:
    """Bytes whose bytewise (memcmp) order is SemVer precedence; build metadata is ignored.

    Layout: MAJOR, MINOR, PATCH as 8-byte big-endian; then 0xFF for a release, or for each
    pre-release identifier either 0x01 <digit count> <digits> (numeric) or 0x02 <ASCII> 0x00
    (alphanumeric), followed by a final 0x00.
    """
    return _key_of(_as_version(v))


# Above every stored key at the position it appears: a component >= 2**63 packs to a first byte
# of 0x80 or more, a numeric identifier of more than 255 digits beats every stored one.
_ABOVE_COMPONENT = b"\x80"
_ABOVE_NUMERIC = b"\x01\xff\xff"


def _key_of(version: semver.Version) -> bytes:
    """``precedence_key`` without validation, so that a range's bound that no stored version
    could reach (``<99999999999999999999.0.0``) still gets a key that sorts where it belongs."""
    key = []
    for component in (version.major, version.minor, version.patch):
        if component >= _MAX_COMPONENT:
            return b"".join(key) + _ABOVE_COMPONENT
        key.append(struct.pack(">Q", component))
    if version.prerelease is None:
        key.append(b"\xff")
        return b"".join(key)
    for part in version.prerelease.split("."):
        raw = part.encode("ascii")
        if part.isdigit():  # no leading zeros: more digits means a bigger number
            if len(raw) > _MAX_NUMERIC_IDENTIFIER_DIGITS:
                return b"".join(key) + _ABOVE_NUMERIC
            key += [b"\x01", bytes([len(raw)]), raw]
        else:
            key += [b"\x02", raw, b"\x00"]
    key.append(b"\x00")
    return b"".join(key)


def compare(a: VersionLike, b: VersionLike) -> int:
    """-1, 0 or 1 by SemVer precedence (build metadata ignored)."""
    result = _as_version(a).compare(_as_version(b))
    return (result > 0) - (result < 0)


def sort_versions(versions: Iterable[str], newest_first: bool = True) -> list[str]:
    """The given version strings sorted by precedence; stable, the strings are kept as given."""
    return sorted(versions, key=precedence_key, reverse=newest_first)


def is_compatible(a: VersionLike, b: VersionLike) -> bool:
    """Caret compatibility: same MAJOR when MAJOR >= 1; same MAJOR.MINOR when MAJOR is 0;
    the same MAJOR.MINOR.PATCH when both are 0.0.x. Pre-release and build are not considered."""
    va, vb = _as_version(a), _as_version(b)
    if va.major != vb.major:
        return False
    if va.major > 0:
        return True
    if va.minor != vb.minor:
        return False
    return va.minor > 0 or va.patch == vb.patch


# --------------------------------------------------------------------------- ranges

_OPERATORS: dict[str, Callable[[int, int], bool]] = {
    "==": operator.eq,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

_Comparator = tuple[Callable[[int, int], bool], semver.Version]


class VersionRange:
    """An npm range (``^``, ``~``, ``x``/``*``, ``>=``, ``<``, hyphen ranges, ``||``).

    ``semantic_version.NpmSpec`` validates the text and desugars each block (``^1.2`` to
    ``>=1.2.0 <2.0.0`` ...). Matching follows npm, including its pre-release rule: a pre-release
    version only satisfies a comparator set that has a comparator with a pre-release on the same
    MAJOR.MINOR.PATCH. (``NpmSpec.match`` itself gets several pre-release cases wrong, e.g. it
    lets ``<2.0.0`` match ``2.0.0-rc.1`` and ``1.2.3-rc.1`` match ``1.2.3``.)
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._sets = _comparator_sets(text)

    def match(self, version: VersionLike) -> bool:
        """Whether ``version`` satisfies the range (an invalid version raises InvalidArgument)."""
        v = _as_version(version)
        return any(_set_matches(comparators, v) for comparators in self._sets)

    def intervals(self) -> "RangeIntervals":
        """The range as intervals of precedence keys, for an index seek (see ``RangeIntervals``)."""
        releases: list[KeyInterval] = []
        prereleases: list[KeyInterval] = []
        for comparators in self._sets:
            span = KeyInterval()
            for op, target in comparators:
                span = span.intersect(_comparator_interval(op, _key_of(target)))
            releases.append(span)
            for triple in {t.to_tuple()[:3] for _, t in comparators if t.prerelease is not None
                           and max(t.major, t.minor, t.patch) < _MAX_COMPONENT}:
                prefix = struct.pack(">QQQ", *triple)
                # Every pre-release of MAJOR.MINOR.PATCH, and nothing else: their keys continue
                # the prefix with 0x01 or 0x02, the release's with 0xFF.
                prereleases.append(span.intersect(
                    KeyInterval(prefix + b"\x00", True, prefix + b"\xff", False)))
        return RangeIntervals(_union(releases), _union(prereleases))

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"VersionRange({self.text!r})"


@dataclass(frozen=True)
class KeyInterval:
    """Precedence keys between ``low`` and ``high`` (None: unbounded), each end in or out."""

    low: bytes | None = None
    low_in: bool = True
    high: bytes | None = None
    high_in: bool = True

    def intersect(self, other: "KeyInterval") -> "KeyInterval":
        low = max((self, other), key=lambda i: _low_order(i))
        high = min((self, other), key=lambda i: _high_order(i))
        return KeyInterval(low.low, low.low_in, high.high, high.high_in)

    @property
    def empty(self) -> bool:
        if self.low is None or self.high is None:
            return False
        return self.low > self.high or (self.low == self.high and not (self.low_in and self.high_in))

    def overlaps(self, later: "KeyInterval") -> bool:
        """Whether ``later`` (which does not start before this one) shares a key with it."""
        if self.high is None or later.low is None:
            return True
        return later.low < self.high or (later.low == self.high and later.low_in and self.high_in)


@dataclass(frozen=True)
class RangeIntervals:
    """A range as disjoint key intervals: a release matches when its key is in one of
    ``releases``; a pre-release when its key is in one of ``prereleases`` (npm's rule, already
    applied: those intervals only hold pre-releases of a MAJOR.MINOR.PATCH that the range names
    with a pre-release). Both lists are sorted and their intervals disjoint."""

    releases: list[KeyInterval]
    prereleases: list[KeyInterval]


def _low_order(i: KeyInterval) -> tuple:
    """Sort key of a lower end: the bigger, the tighter."""
    return (0,) if i.low is None else (1, i.low, 0 if i.low_in else 1)


def _high_order(i: KeyInterval) -> tuple:
    """Sort key of an upper end: the bigger, the wider."""
    return (2,) if i.high is None else (1, i.high, 1 if i.high_in else 0)


def _comparator_interval(op: Callable[[int, int], bool], key: bytes) -> KeyInterval:
    if op is operator.eq:
        return KeyInterval(key, True, key, True)
    if op in (operator.gt, operator.ge):
        return KeyInterval(low=key, low_in=op is operator.ge)
    return KeyInterval(high=key, high_in=op is operator.le)


def _union(intervals: list[KeyInterval]) -> list[KeyInterval]:
    """The same keys as disjoint intervals, in order (so that no row is found twice)."""
    merged: list[KeyInterval] = []
    for i in sorted((i for i in intervals if not i.empty), key=_low_order):
        if merged and merged[-1].overlaps(i):
            last = merged[-1]
            high = max((last, i), key=_high_order)
            merged[-1] = KeyInterval(last.low, last.low_in, high.high, high.high_in)
        else:
            merged.append(i)
    return merged


def _set_matches(comparators: list[_Comparator], v: semver.Version) -> bool:
    if not all(op(v.compare(target), 0) for op, target in comparators):
        return False
    return v.prerelease is None or any(
        target.prerelease is not None and target.to_tuple()[:3] == v.to_tuple()[:3]
        for _, target in comparators
    )


def _comparator_sets(text: str) -> list[list[_Comparator]]:
    """The ``||``-separated comparator sets of a range; invalid text raises InvalidArgument."""
    if not isinstance(text, str):
        raise InvalidArgument(f"invalid version range {text!r}: must be a string; {_RANGE_FORM}")
    if len(text) > MAX_RANGE_LENGTH:
        raise InvalidArgument(
            f"invalid version range {_clip(text)}: longer than {MAX_RANGE_LENGTH} characters"
        )
    if not text.strip():
        raise InvalidArgument(f"invalid version range {text!r}: empty (use '*' for any version)")
    parser = semantic_version.NpmSpec.Parser
    try:
        semantic_version.NpmSpec(text)  # validates the whole expression
        sets = []
        # The same split as NpmSpec.Parser.parse, which discards the pre-release targets we need.
        for group in text.split(parser.JOINER):
            group = group.strip() or "*"
            if parser.HYPHEN in group:
                low, high = group.split(parser.HYPHEN)
                blocks = [">=" + low, "<=" + high]
            else:
                blocks = group.split(" ")
            sets.append([_comparator(r) for block in blocks for r in parser.parse_simple(block)])
    except (ValueError, AttributeError) as exc:  # NpmSpec raises AttributeError on some inputs
        raise InvalidArgument(f"invalid version range {_clip(text)}: {_RANGE_FORM}") from exc
    return sets


def _comparator(r: semantic_version.base.Range) -> _Comparator:
    t = r.target  # build metadata of the target is ignored, as npm does
    return _OPERATORS[r.operator], semver.Version(
        t.major, t.minor, t.patch, ".".join(t.prerelease) or None
    )


def parse_range(text: str) -> VersionRange:
    """Parse an npm-style range; invalid text raises ``InvalidArgument``."""
    return VersionRange(text)


def looks_like_range(text: str) -> bool:
    """True when ``text`` is not a plain exact version but is a valid range (e.g. ``^1.2``)."""
    try:
        parse_version(text)
        return False
    except InvalidArgument:
        pass
    try:
        parse_range(text)
        return True
    except InvalidArgument:
        return False


# --------------------------------------------------------------------------- facade


class VersionManager:
    """The seed's version API; stateless, ``VersionManager()`` takes no arguments."""

    _BUMPS: dict[str, Callable[[semver.Version], semver.Version]] = {
        "major": semver.Version.bump_major,
        "minor": semver.Version.bump_minor,
        "patch": semver.Version.bump_patch,
        # bump_when_empty: '1.0.0' -> '1.0.1-rc.1', so the result is always newer.
        "prerelease": lambda v: v.bump_prerelease(bump_when_empty=True),
    }

    def parse(self, text: str) -> semver.Version:
        return parse_version(text)

    def compare(self, a: VersionLike, b: VersionLike) -> int:
        return compare(a, b)

    def sort(self, versions: Iterable[str], newest_first: bool = True) -> list[str]:
        return sort_versions(versions, newest_first)

    def is_newer(self, a: VersionLike, b: VersionLike) -> bool:
        """Whether ``a`` has higher precedence than ``b``."""
        return compare(a, b) > 0

    def is_compatible(self, a: VersionLike, b: VersionLike) -> bool:
        return is_compatible(a, b)

    def matches(self, version: VersionLike, range_text: str) -> bool:
        return parse_range(range_text).match(version)

    def get_latest_version(
        self, versions: Iterable[str], include_prerelease: bool = True
    ) -> str | None:
        """The version with the highest precedence (as given), or None when there is none."""
        candidates = [
            v for v in versions if include_prerelease or _as_version(v).prerelease is None
        ]
        return max(candidates, key=precedence_key, default=None)

    def increment_version(self, version: VersionLike, part: str = "patch") -> str:
        """Bump ``part`` (major, minor, patch or prerelease) like semver's ``bump_*``:
        lower parts reset, pre-release and build dropped; ``prerelease`` bumps the last
        numeric identifier ('1.0.0-rc.1' -> '1.0.0-rc.2', '1.0.0' -> '1.0.1-rc.1')."""
        bump = self._BUMPS.get(part) if isinstance(part, str) else None
        if bump is None:
            raise InvalidArgument(
                f"invalid version part {part!r}: expected one of {', '.join(self._BUMPS)}"
            )
        return format_version(bump(_as_version(version)))
