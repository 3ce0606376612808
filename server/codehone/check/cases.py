"""Check cases for ``codehone check``: the cases file, cursors, expectations, sampled lines.

The cases file (``PROJECT/.codehone/checks.toml`` by default) is TOML::

    [thresholds]                  # all optional
    min_pass_rate = 1.0           # fraction of cases that must pass (0..1; default 1.0)
    max_p95_latency_ms = 2000     # 95th percentile of the completion requests' latency
    max_load_seconds = 120        # server start to its first completion

    [options]                     # optional: sent as initializationOptions.completion
    maxNewTokens = 32             # (maxNewTokens, maxPromptTokens, timeBudgetMs, multiline)

    [[case]]
    name = "opens the config"     # optional (default FILE:LINE:COLUMN)
    file = "src/app/config.py"    # relative to the project
    marker = "<CURSOR>"           # the cursor: a marker in the file (removed from the text sent),
    # line = 12                   #   or a 1-based line and column (column in characters;
    # column = 9                  #   without it, the end of the line),
    # after = "with open(path, "  #   or right after the first occurrence of a text
    kind = "inline"               # inline (ghost text, default) or completion (the menu)
    starts_with = "encoding="     # what must hold (any combination; none: the server answers)
    equals = "encoding='utf-8')"
    matches = "^encoding="        # a Python regular expression, searched (re.search)
    not_contains = ["TODO"]       # a string or a list of strings
    not_empty = true              # a completion must come back

Every marker of every case on a file is removed from the text sent for that file, so several
cases can mark one file with different markers; ``line``/``column`` and ``after`` address that
text. An empty answer counts as the empty string for ``starts_with``, ``equals`` and
``matches``. Everything is validated before the server starts: an unknown key, a missing file,
a marker or text not found, a position past the end of the file are one-line errors.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codehone.core.errors import CodehoneError
from codehone.core.text_positions import line_count, line_span

CASES_FILE = Path(".codehone") / "checks.toml"
KINDS = ("inline", "completion")
CURSOR_KEYS = ("marker", "line", "after")
EXPECT_KEYS = ("starts_with", "equals", "matches", "not_contains", "not_empty")
CASE_KEYS = frozenset(("name", "file", "kind", "marker", "line", "column", "after", *EXPECT_KEYS))
THRESHOLD_KEYS = frozenset(("min_pass_rate", "max_p95_latency_ms", "max_load_seconds"))
TOP_KEYS = frozenset(("thresholds", "options", "case"))

LANGUAGE_IDS = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascriptreact",
    ".ts": "typescript",
    ".tsx": "typescriptreact",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".kt": "kotlin",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".hpp": "cpp",
    ".cs": "csharp",
    ".rb": "ruby",
    ".php": "php",
    ".swift": "swift",
    ".scala": "scala",
    ".lua": "lua",
    ".sh": "shellscript",
    ".bash": "shellscript",
}


class CheckInputError(CodehoneError):
    """A cases file, a case or a check option is malformed or points at nothing."""


def language_id(path: str) -> str:
    return LANGUAGE_IDS.get(Path(path).suffix.lower(), "plaintext")


@dataclass(frozen=True)
class Expectation:
    """What must hold of a completion's text (None: the server answered nothing)."""

    starts_with: str | None = None
    equals: str | None = None
    matches: str | None = None
    not_contains: tuple[str, ...] = ()
    not_empty: bool = False
    exact_match_target: str | None = None  # sampled lines: CodeXGLUE exact match on one line

    def failures(self, text: str | None) -> list[str]:
        """Why ``text`` does not meet the expectation (empty: it does)."""
        got = text or ""
        why = []
        if self.not_empty and not got:
            why.append("expected a completion, got none")
        if self.starts_with is not None and not got.startswith(self.starts_with):
            why.append(f"does not start with {self.starts_with!r}")
        if self.equals is not None and got != self.equals:
            why.append(f"not equal to {self.equals!r}")
        if self.matches is not None and re.search(self.matches, got) is None:
            why.append(f"does not match /{self.matches}/")
        why.extend(f"contains {s!r}" for s in self.not_contains if s in got)
        if self.exact_match_target is not None:
            prediction = got.split("\n", 1)[0].strip()
            if prediction.split() != self.exact_match_target.strip().split():
                why.append(f"expected {self.exact_match_target.strip()!r}")
        return why


@dataclass(frozen=True)
class CheckCase:
    """One resolved case: a document's text, the cursor in it, and what must come back."""

    name: str
    path: Path  # absolute; the document's URI (the file need not exist for sampled lines)
    text: str  # what is sent to the server (markers removed)
    offset: int  # the cursor, an index into ``text``
    kind: str = "inline"
    expect: Expectation = field(default_factory=Expectation)

    @property
    def language_id(self) -> str:
        return language_id(self.path.name)


@dataclass
class Thresholds:
    min_pass_rate: float = 1.0
    max_p95_latency_ms: float | None = 2000.0
    max_load_seconds: float | None = 120.0


@dataclass
class CasesFile:
    path: Path
    cases: list[CheckCase]
    thresholds: Thresholds
    options: dict[str, Any]


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def check_fraction(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise CheckInputError(
            f"{what} must be a fraction between 0 and 1 (e.g. 0.9), got {value!r}"
        )
    return float(value)


def check_positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise CheckInputError(f"{what} must be a positive number, got {value!r}")
    return float(value)


def _string(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str):
        raise CheckInputError(f"{where}: `{key}` must be a string, got {type(value).__name__}")
    return value


def _positive_int(value: Any, where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckInputError(f"{where}: `{key}` must be an integer >= 1 (1-based), got {value!r}")
    return value


def _read_text(path: Path, where: str) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckInputError(f"{where}: file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise CheckInputError(f"{where}: {str(path)!r} is a directory, not a file") from None
    except OSError as exc:
        raise CheckInputError(f"{where}: cannot read {str(path)!r} ({exc.strerror})") from None
    return raw.decode("utf-8", errors="replace")


def strip_markers(text: str, markers: set[str]) -> tuple[str, dict[str, int]]:
    """``text`` with every occurrence of every marker removed, and the offset (in the result)
    of each marker's first occurrence."""
    if not markers:
        return text, {}
    pattern = re.compile("|".join(re.escape(m) for m in sorted(markers, key=len, reverse=True)))
    parts: list[str] = []
    first: dict[str, int] = {}
    position = 0
    removed = 0
    for match in pattern.finditer(text):
        parts.append(text[position : match.start()])
        first.setdefault(match.group(), match.start() - removed)
        removed += len(match.group())
        position = match.end()
    parts.append(text[position:])
    return "".join(parts), first


def _expectation(raw: dict[str, Any], where: str) -> Expectation:
    values: dict[str, Any] = {}
    for key in ("starts_with", "equals", "matches"):
        if key in raw:
            values[key] = _string(raw[key], where, key)
    if "matches" in values:
        try:
            re.compile(values["matches"])
        except re.error as exc:
            raise CheckInputError(
                f"{where}: `matches` is not a valid regular expression ({exc})"
            ) from None
    if "not_contains" in raw:
        value = raw["not_contains"]
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(s, str) and s for s in items):
            raise CheckInputError(
                f"{where}: `not_contains` must be a non-empty string or a list of them"
            )
        values["not_contains"] = tuple(items)
    if "not_empty" in raw:
        if not isinstance(raw["not_empty"], bool):
            raise CheckInputError(f"{where}: `not_empty` must be true or false")
        values["not_empty"] = raw["not_empty"]
    return Expectation(**values)


def _cursor(raw: dict[str, Any], text: str, markers: dict[str, int], where: str) -> int:
    """The cursor: an offset into ``text`` (markers already removed)."""
    if "marker" in raw:
        marker = raw["marker"]
        if marker not in markers:
            raise CheckInputError(f"{where}: marker {marker!r} not found in {raw['file']}")
        offset = markers[marker]
    elif "after" in raw:
        after = _string(raw["after"], where, "after")
        if not after:
            raise CheckInputError(f"{where}: `after` must not be empty")
        index = text.find(after)
        if index < 0:
            raise CheckInputError(f"{where}: text {after!r} not found in {raw['file']}")
        offset = index + len(after)
    else:
        line = _positive_int(raw["line"], where, "line")
        span = line_span(text, line - 1)
        if span is None:
            raise CheckInputError(
                f"{where}: line {line} is past the end of {raw['file']} ({line_count(text)} lines)"
            )
        start, end = span
        if "column" in raw:
            column = _positive_int(raw["column"], where, "column")
            if column - 1 > end - start:
                raise CheckInputError(
                    f"{where}: column {column} is past the end of line {line} of {raw['file']} "
                    f"({end - start} characters; the last cursor column is {end - start + 1})"
                )
            offset = start + column - 1
        else:
            offset = end
    return offset


def _default_name(file: str, text: str, offset: int) -> str:
    line = text.count("\n", 0, offset)
    column = offset - (text.rfind("\n", 0, offset) + 1)
    return f"{file}:{line + 1}:{column + 1}"


# --------------------------------------------------------------------------------------------
# The cases file
# --------------------------------------------------------------------------------------------


def _thresholds(raw: Any, where: str) -> Thresholds:
    if raw is None:
        return Thresholds()
    if not isinstance(raw, dict):
        raise CheckInputError(f"{where}: [thresholds] must be a table")
    unknown = sorted(set(raw) - THRESHOLD_KEYS)
    if unknown:
        raise CheckInputError(
            f"{where}: unknown threshold {unknown[0]!r} (known: {', '.join(sorted(THRESHOLD_KEYS))})"
        )
    thresholds = Thresholds()
    if "min_pass_rate" in raw:
        thresholds.min_pass_rate = check_fraction(raw["min_pass_rate"], f"{where}: min_pass_rate")
    if "max_p95_latency_ms" in raw:
        thresholds.max_p95_latency_ms = check_positive(
            raw["max_p95_latency_ms"], f"{where}: max_p95_latency_ms"
        )
    if "max_load_seconds" in raw:
        thresholds.max_load_seconds = check_positive(
            raw["max_load_seconds"], f"{where}: max_load_seconds"
        )
    return thresholds


def load_cases_file(path: Path, project_dir: Path) -> CasesFile:
    """Parse, validate and resolve a cases file; every problem is a one-line CheckInputError."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise CheckInputError(f"{path}: cases file does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise CheckInputError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise CheckInputError(
            f"{path}: cannot read the cases file ({exc.strerror or exc})"
        ) from None
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        hint = " (cases are [[case]] tables)" if unknown[0] in ("cases", "check", "checks") else ""
        raise CheckInputError(f"{path}: unknown key {unknown[0]!r}{hint}")
    options = data.get("options", {})
    if not isinstance(options, dict):
        raise CheckInputError(f"{path}: [options] must be a table")
    raw_cases = data.get("case")
    if raw_cases is None or raw_cases == []:
        raise CheckInputError(f"{path}: no cases (add [[case]] tables)")
    if not isinstance(raw_cases, list) or not all(isinstance(c, dict) for c in raw_cases):
        raise CheckInputError(f"{path}: `case` must be an array of tables ([[case]])")
    cases = resolve_cases(raw_cases, project_dir, str(path))
    return CasesFile(path, cases, _thresholds(data.get("thresholds"), str(path)), options)


def resolve_cases(
    raw_cases: list[dict[str, Any]], project_dir: Path, source: str
) -> list[CheckCase]:
    """Validate raw case tables and resolve their documents and cursors."""
    project_dir = Path(project_dir).resolve()
    wheres = []
    for number, raw in enumerate(raw_cases, 1):
        label = raw.get("name") if isinstance(raw.get("name"), str) else None
        where = f"{source}: case {number}" + (f" ({label!r})" if label else "")
        wheres.append(where)
        unknown = sorted(set(raw) - CASE_KEYS)
        if unknown:
            raise CheckInputError(
                f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(CASE_KEYS))})"
            )
        if "file" not in raw:
            raise CheckInputError(f"{where}: no `file`")
        _string(raw["file"], where, "file")
        given = [k for k in CURSOR_KEYS if k in raw]
        if len(given) != 1:
            raise CheckInputError(
                f"{where}: give exactly one cursor: `marker`, `line` (+ `column`) or `after`"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if "column" in raw and "line" not in raw:
            raise CheckInputError(f"{where}: `column` needs a `line`")
        if "marker" in raw and not _string(raw["marker"], where, "marker"):
            raise CheckInputError(f"{where}: `marker` must not be empty")
        kind = raw.get("kind", "inline")
        if kind not in KINDS:
            raise CheckInputError(
                f"{where}: `kind` must be one of {', '.join(KINDS)}, got {kind!r}"
            )
        if "name" in raw:
            _string(raw["name"], where, "name")

    # Every marker of every case on a file is removed from the text sent for that file.
    markers_by_file: dict[Path, set[str]] = {}
    for raw in raw_cases:
        target = (project_dir / raw["file"]).resolve()
        markers_by_file.setdefault(target, set())
        if "marker" in raw:
            markers_by_file[target].add(raw["marker"])
    texts: dict[Path, tuple[str, dict[str, int]]] = {}
    cases = []
    for raw, where in zip(raw_cases, wheres, strict=True):
        target = (project_dir / raw["file"]).resolve()
        if target not in texts:
            texts[target] = strip_markers(_read_text(target, where), markers_by_file[target])
        text, markers = texts[target]
        offset = _cursor(raw, text, markers, where)
        cases.append(
            CheckCase(
                name=raw.get("name") or _default_name(raw["file"], text, offset),
                path=target,
                text=text,
                offset=offset,
                kind=raw.get("kind", "inline"),
                expect=_expectation(raw, where),
            )
        )
    return cases


# --------------------------------------------------------------------------------------------
# Sampled lines (no cases file): the method of `codehone eval`'s line completion
# --------------------------------------------------------------------------------------------


def held_out_files(project_dir: Path, data_dir: Path | None, seed: int) -> tuple[list[Any], str]:
    """The project's held-out source files, and where they came from.

    A prepared data set (``--data``, or ``PROJECT/.codehone/data`` that ``codehone tune``
    writes) gives its test split: exactly the files the tuned model never trained on.
    Otherwise the project's files are collected, deduplicated and split as ``codehone
    prepare`` does (same seed as ``codehone tune``), and the test split is used; a project
    too small to split uses all its files."""
    from codehone.core.errors import TrainingError
    from codehone_training.data.project import (
        DATASET_FILE,
        PrepareConfig,
        collect_files,
        deduplicate,
        load_split,
        split_files,
    )

    candidates = [data_dir] if data_dir is not None else [project_dir / ".codehone" / "data"]
    for candidate in candidates:
        if (candidate / DATASET_FILE).is_file():
            try:
                return load_split(candidate, "test"), f"the test split of {candidate}"
            except (TrainingError, OSError, ValueError, KeyError) as exc:
                raise CheckInputError(f"{candidate}: cannot read the data set ({exc})") from None
        if data_dir is not None:
            raise CheckInputError(f"{candidate}: not a codehone data set (no {DATASET_FILE})")
    config = PrepareConfig(project_dir=project_dir, out_dir=project_dir, seed=seed)
    try:
        files = collect_files(config).files
    except TrainingError as exc:
        raise CheckInputError(str(exc)) from None
    files, _ = deduplicate(files, config.near_duplicate_threshold)
    if not files:
        raise CheckInputError(f"{project_dir}: no source files to sample lines from")
    try:
        split = split_files(files, config.validation_fraction, config.test_fraction, seed)
    except TrainingError:
        return files, f"all the source files ({len(files)}, too few to hold some out)"
    return split["test"], f"the held-out files ({len(split['test'])} of {len(files)})"


def sampled_cases(
    project_dir: Path, count: int, seed: int, data_dir: Path | None = None
) -> tuple[list[CheckCase], str]:
    """``count`` line-completion cases from held-out lines of the project (seeded): the cursor
    at a random point inside a line, the rest of the line removed and expected back."""
    from codehone_training.evaluation.cases import line_cases

    project_dir = Path(project_dir).resolve()
    files, source = held_out_files(project_dir, data_dir, seed)
    cases = []
    for case in line_cases(files, count, seed):
        path = project_dir / case.path
        name = _default_name(case.path, case.text, case.offset)
        cases.append(
            CheckCase(
                name=name,
                path=path,
                text=case.text,
                offset=case.offset,
                kind="inline",
                expect=Expectation(exact_match_target=case.target),
            )
        )
    if not cases:
        raise CheckInputError(f"{project_dir}: no lines to sample in {source}")
    return cases, source


def make_case(
    project_dir: Path,
    file: str,
    *,
    text: str | None = None,
    marker: str | None = None,
    line: int | None = None,
    column: int | None = None,
    after: str | None = None,
    kind: str = "inline",
    name: str | None = None,
) -> CheckCase:
    """One case built in code (``codehone.check.pytest_plugin``), validated like a cases file's. With
    ``text`` the document is that text (``file`` only names it); otherwise the file's."""
    raw: dict[str, Any] = {"file": file, "kind": kind}
    for key, value in (("marker", marker), ("line", line), ("column", column), ("after", after)):
        if value is not None:
            raw[key] = value
    if name is not None:
        raw["name"] = name
    if text is None:
        return resolve_cases([raw], project_dir, "case")[0]
    where = f"case {name or file!r}"
    if len([k for k in CURSOR_KEYS if k in raw]) > 1:
        raise CheckInputError(f"{where}: give at most one cursor: marker, line (+ column) or after")
    if not any(k in raw for k in CURSOR_KEYS):  # no cursor: the end of the text
        if column is not None:
            raise CheckInputError(f"{where}: `column` needs a `line`")
        stripped, offset = text, len(text)
    else:
        stripped, markers = strip_markers(text, {marker} if marker else set())
        offset = _cursor(raw, stripped, markers, where)
    if kind not in KINDS:
        raise CheckInputError(f"{where}: `kind` must be one of {', '.join(KINDS)}, got {kind!r}")
    return CheckCase(
        name=name or _default_name(file, stripped, offset),
        path=(Path(project_dir) / file).resolve(),
        text=stripped,
        offset=offset,
        kind=kind,
    )
