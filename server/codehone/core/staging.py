"""One way to write a directory or a file that others read: build it beside its target, then
rename it into place.

A reader (a server loading a model, a second ``codehone`` run) sees the old version or the new
one, never half of either; an interrupted build leaves only a hidden ``.NAME.*`` folder that
is removed on the way out. The staging folder gets the permissions of an ordinary new folder
(``mkdtemp`` makes it private, and a published model directory must not be). A target that is
a symbolic link is refused: what codehone writes stays where the user named. The temporary
file of ``write_text_atomic`` is created with ``O_CREAT | O_EXCL`` (``mkstemp``), which never
follows a link, and the rename replaces a link rather than writing through it; a file codehone
reads in order to rewrite it is opened with ``O_NOFOLLOW`` where the platform has it
(``read_text_nofollow``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from codehone.core.errors import CodehoneError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def refuse_links(
    paths: Iterable[Path], error: type[CodehoneError] = CodehoneError, hint: str = ""
) -> None:
    """Raise ``error`` naming the first of ``paths`` that is a symbolic link (``hint``: what
    the user can do instead, appended to the message)."""
    for path in paths:
        if Path(path).is_symlink():
            raise error(f"{path}: is a symbolic link; refusing to write or delete through it{hint}")


def read_text_nofollow(path: Path, error: type[CodehoneError] = CodehoneError) -> str | None:
    """The UTF-8 text of ``path`` (None if there is no such file), refusing a symbolic link:
    opened with ``O_NOFOLLOW`` where the platform has it, checked before opening elsewhere."""
    refuse_links([path], error)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        handle = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a link planted between the check and the open
            raise error(f"{path}: is a symbolic link; refusing to read through it") from None
        raise error(f"{path}: cannot be read ({exc.strerror or exc})") from None
    with os.fdopen(handle, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text") from None


def check_target(
    target: Path,
    is_ours: Callable[[Path], bool],
    what: str,
    error: type[CodehoneError] = CodehoneError,
) -> None:
    """Refuse a target that is a link, not a directory, or a non-empty directory that
    ``is_ours`` does not recognise (``what`` names what would be there, for the message)."""
    refuse_links([target], error)
    if target.exists():
        if not target.is_dir():
            raise error(f"{target}: exists and is not a directory")
        if any(target.iterdir()) and not is_ours(target):
            raise error(f"{target}: not empty and not {what}; refusing to overwrite")


def new_staging_dir(target: Path, kind: str = "") -> Path:
    """An empty folder beside ``target`` (same file system, so the final rename is atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.{kind + '-' if kind else ''}"
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    staging.chmod(0o777 & ~_umask())
    return staging


def publish(staging: Path, target: Path) -> None:
    """Move the finished ``staging`` folder to ``target``. An old ``target`` is moved aside
    first and deleted after, so ``target`` is at every moment the old folder or the new one."""
    refuse_links([target])
    if target.exists():
        trash = new_staging_dir(target, "old")
        os.replace(target, trash / "old")
        os.replace(staging, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staging, target)


@contextlib.contextmanager
def staged_dir(
    target: Path,
    is_ours: Callable[[Path], bool],
    what: str,
    error: type[CodehoneError] = CodehoneError,
) -> Iterator[Path]:
    """``with staged_dir(out, ...) as staging:`` write into ``staging``; on a clean exit it
    replaces ``out``, on an exception it is deleted and ``out`` is left as it was."""
    target = Path(target)
    check_target(target, is_ours, what, error)
    staging = new_staging_dir(target)
    try:
        yield staging
        publish(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it and a rename; a link at
    ``path`` is replaced by the file, never followed."""
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
