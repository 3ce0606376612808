"""Context from other open files: the beginning of the files the user edited most recently.

Code in one file often calls what another open file defines. With ``otherDocuments`` on, the
prompt gets the other open documents of the same language, most recently edited first (the
prompt builder keeps as many as fit its token budget), each introduced by a one-line comment
naming its path, e.g. ``# path: util.py``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from codehone.core.completion.cursor import Neighbor

MAX_NEIGHBORS = 4  # more would rarely fit the budget, and each costs tokenizing its text
_HASH_COMMENT = "#"
_LINE_COMMENT = {
    **dict.fromkeys(
        ["python", "shellscript", "sh", "bash", "ruby", "perl", "r", "yaml", "toml", "makefile",
         "dockerfile", "elixir", "julia", "nim", "powershell", "coffeescript", "cmake"],
        "#",
    ),
    **dict.fromkeys(
        ["c", "cpp", "csharp", "java", "javascript", "javascriptreact", "typescript",
         "typescriptreact", "go", "rust", "kotlin", "swift", "scala", "dart", "php", "zig",
         "groovy", "objective-c", "objective-cpp", "proto", "jsonc", "solidity", "d"],
        "//",
    ),
    **dict.fromkeys(["lua", "sql", "haskell", "ada", "elm", "vhdl"], "--"),
    **dict.fromkeys(["lisp", "clojure", "scheme", "racket", "elisp", "ini", "asm"], ";"),
    **dict.fromkeys(["erlang", "latex", "tex", "matlab", "prolog"], "%"),
    "vim": '"',
    "fortran": "!",
}  # fmt: skip


def comment_prefix(language_id: str | None) -> str:
    return _LINE_COMMENT.get((language_id or "").lower(), _HASH_COMMENT)


def path_header(language_id: str | None, display_path: str) -> str:
    return f"{comment_prefix(language_id)} path: {display_path}\n"


def display_path(path: Path | None, uri: str, folders: Iterable[Path]) -> str:
    """The path shown to the model: relative to the workspace folder holding the file, else
    its name."""
    if path is None:
        return PurePosixPath(uri.split("?", 1)[0]).name or uri
    best: Path | None = None
    for folder in folders:
        if path.is_relative_to(folder) and (best is None or len(folder.parts) > len(best.parts)):
            best = folder
    if best is not None:
        return path.relative_to(best).as_posix()
    return path.name


class Recency:
    """The order in which documents were last opened or edited."""

    def __init__(self) -> None:
        self._clock = itertools.count(1)
        self._touched: dict[str, int] = {}

    def touch(self, uri: str) -> None:
        self._touched[uri] = next(self._clock)

    def forget(self, uri: str) -> None:
        self._touched.pop(uri, None)

    def most_recent_first(self, uris: Iterable[str]) -> list[str]:
        return sorted(uris, key=lambda uri: self._touched.get(uri, 0), reverse=True)


def pick_neighbors(
    current: str,
    documents: dict[str, tuple[str | None, str, str]],
    recency: Recency,
    limit: int = MAX_NEIGHBORS,
) -> tuple[Neighbor, ...]:
    """Other documents of ``current``'s language, most recently edited first.

    ``documents``: uri -> (language id, display path, text)."""
    if current not in documents:
        return ()
    language = documents[current][0]
    others = [
        uri
        for uri, (lang, _, text) in documents.items()
        if uri != current and lang == language and text.strip()
    ]
    chosen = recency.most_recent_first(others)[:limit]
    return tuple(
        Neighbor(path_header(language, documents[uri][1]), documents[uri][2]) for uri in chosen
    )
