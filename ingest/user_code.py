"""Where a user's own model code lives, so an exception raised inside it can be told apart from a bug
in this tool (torch-free: the root CLI imports it to turn such an exception into one line).

`ingest.zoo.user` records each model file it imports (and, for `package.module:factory`, that
module's folder). `user_frame(exc)` finds the innermost traceback frame in one of them.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from catalog.errors import CircuitsError

__all__ = [
    "UserFrame",
    "UserModelError",
    "forward_time_limit",
    "register_user_code",
    "set_forward_timeout",
    "user_frame",
    "user_model_error",
]

_FILES: set[str] = set()  # resolved model files
_FOLDERS: set[str] = set()  # packages: every file under them counts as the user's
_SIBLINGS: set[str] = set()  # a model file's folder: the modules right beside it count (not sub-folders)


def register_user_code(path: str | os.PathLike[str], *, folder: bool = False) -> None:
    """Count `path` as the user's model code: a package folder (`folder=True`: every file under it),
    or a model file (it and the modules right beside it, which it may import)."""
    resolved = Path(path).resolve()
    if folder:
        _FOLDERS.add(str(resolved))
    else:
        _FILES.add(str(resolved))
        _SIBLINGS.add(str(resolved.parent))


@dataclass(frozen=True)
class UserFrame:
    """The innermost frame of an exception's traceback that is in the user's model code."""

    file: str
    line: int
    function: str

    def __str__(self) -> str:
        return f"{self.function} ({Path(self.file).name}, line {self.line})"


def _is_user_file(filename: str) -> bool:
    try:
        resolved = str(Path(filename).resolve())
    except OSError:
        return False
    if resolved in _FILES or os.path.dirname(resolved) in _SIBLINGS:
        return True
    return any(resolved.startswith(folder + os.sep) for folder in _FOLDERS)


_OURS = str(Path(__file__).resolve().parents[1])  # this project's packages live here


def _ours(filename: str) -> bool:
    return any(
        filename.startswith(os.path.join(_OURS, pkg) + os.sep) for pkg in ("catalog", "ingest", "queries", "circuits")
    )


def user_frame(exc: BaseException) -> UserFrame | None:
    """The innermost frame of `exc`'s traceback in a registered model file, or None.

    None as well when the exception was raised by this project's own code (a hook of ours that the
    user's forward happened to run): that is a bug to report with its traceback, not the user's.
    """
    if not (_FILES or _FOLDERS or _SIBLINGS):
        return None
    found, last = None, None
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if _is_user_file(code.co_filename):
            found = UserFrame(code.co_filename, tb.tb_lineno, code.co_name)
        last = code.co_filename
        tb = tb.tb_next
    if found is None or (last is not None and _ours(str(Path(last).resolve()))):
        return None
    return found


class UserModelError(CircuitsError):
    """The user's own model code raised, hung past the time limit, or returned the wrong thing."""


def user_model_error(exc: BaseException, call: str) -> UserModelError | None:
    """A one-line error for an exception raised in the user's model code during `call`, or None."""
    frame = user_frame(exc)
    if frame is None:
        return None
    text = " ".join(str(exc).split()) or "(no message)"
    return UserModelError(
        f"the model's own code raised {type(exc).__name__} in {frame} during {call}: {text} "
        "(`circuits --debug …` shows the traceback)"
    )


_LIMIT: dict[str, float | None] = {"seconds": None}  # set by the CLI's --timeout


def set_forward_timeout(seconds: float | None) -> None:
    """Bound the first forward pass of a model (the ingest preflight) to `seconds` (None: no bound)."""
    _LIMIT["seconds"] = seconds if seconds and seconds > 0 else None


@contextmanager
def forward_time_limit(what: str) -> Iterator[None]:
    """Raise UserModelError when the block runs past `set_forward_timeout`'s limit (main thread only;
    a hang in pure Python is interrupted, a long C operation at its end)."""
    seconds = _LIMIT["seconds"]
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(_sig, _frame):
        raise UserModelError(
            f"{what} ran longer than {seconds:g} s (`set_forward_timeout`): the model hangs or is far too slow"
        )

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
