"""The one staged write: build beside the target, rename into place, never through a link."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from codehone.core.errors import CodehoneError
from codehone.core.staging import (
    publish,
    read_text_nofollow,
    refuse_links,
    staged_dir,
    write_text_atomic,
)


def ours(path: Path) -> bool:
    return (path / "marker").is_file()


def test_a_staged_dir_replaces_the_old_one_and_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "marker").write_text("old")
    (out / "stale").write_text("x")
    with staged_dir(out, ours, "ours") as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".out.")
        (staging / "marker").write_text("new")
        assert (out / "marker").read_text() == "old"  # readers see the old one until the end
    assert (out / "marker").read_text() == "new" and not (out / "stale").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_failed_build_keeps_the_old_dir(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "marker").write_text("old")
    with pytest.raises(RuntimeError), staged_dir(out, ours, "ours") as staging:
        (staging / "marker").write_text("half")
        raise RuntimeError("interrupted")
    assert (out / "marker").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_the_published_dir_is_not_private(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    try:
        with staged_dir(tmp_path / "out", ours, "ours") as staging:
            (staging / "marker").write_text("x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755


def test_foreign_or_linked_targets_are_refused(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    with (
        pytest.raises(CodehoneError, match="not empty and not a thing"),
        staged_dir(precious, ours, "a thing"),
    ):
        pass
    link = tmp_path / "link"
    link.symlink_to(precious)
    with pytest.raises(CodehoneError, match="symbolic link"), staged_dir(link, ours, "x"):
        pass
    (tmp_path / "file").write_text("x")
    with (
        pytest.raises(CodehoneError, match="not a directory"),
        staged_dir(tmp_path / "file", ours, "x"),
    ):
        pass
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(CodehoneError, match="symbolic link"):
        publish(staging, link)
    assert (precious / "keep.txt").read_text() == "mine"


def test_write_text_atomic_replaces_a_link_instead_of_following_it(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("precious")
    link = tmp_path / "config.toml"
    link.symlink_to(elsewhere)
    write_text_atomic(link, "model = 'x'\n")
    assert not link.is_symlink() and link.read_text() == "model = 'x'\n"
    assert elsewhere.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml", "elsewhere.txt"]


def test_read_text_nofollow_refuses_a_link_and_reads_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("mine")
    (tmp_path / "link").symlink_to(secret)
    with pytest.raises(CodehoneError, match="symbolic link"):
        read_text_nofollow(tmp_path / "link")
    assert read_text_nofollow(secret) == "mine"
    assert read_text_nofollow(tmp_path / "missing") is None
    (tmp_path / "latin1").write_bytes(b"caf\xe9")
    with pytest.raises(CodehoneError, match="not UTF-8"):
        read_text_nofollow(tmp_path / "latin1")


def test_refuse_links_names_the_link(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path)
    refuse_links([tmp_path, tmp_path / "missing"])
    with pytest.raises(CodehoneError, match=r"link: is a symbolic link; refusing .* try X"):
        refuse_links([tmp_path, tmp_path / "link"], hint="; try X")
