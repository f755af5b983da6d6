"""Test fixture: a small disk that fills up for real, under a process of the test's.

``small_disk`` gives a ``SmallDisk``: ``command(argv)`` wraps a command so it runs in a mount
namespace of its own where ``folder`` is an 8 MB tmpfs (``unshare --user --map-root-user
--mount``: no root needed); ``attach(process)`` waits until it is mounted, so the test can
put files there through ``path`` (``/proc/<pid>/root/<folder>``), and ``start()`` lets the
command run. ``fill()`` then takes every free byte, so the next write that needs space fails
with ENOSPC ("database or disk is full" to SQLite), and ``free()`` gives them back.

The command runs inside the namespace because SQLite resolves symbolic links in a database's
path, and ``/proc/<pid>/root`` is one: the test itself cannot open a database there (plain
files are fine). The fixture fails (never skips) where user namespaces are refused.
"""

from __future__ import annotations

import errno
import subprocess
import time
from pathlib import Path

import pytest

SIZE = "8m"
# Mount, say so, wait for the test's go, then become the command (same pid throughout).
_MOUNT = ('mount -t tmpfs -o size={size} tmpfs "$0" && touch "$0/.mounted" && '
          'while [ ! -e "$0/.go" ]; do sleep 0.02; done && exec "$@"')


class SmallDisk:
    """An 8 MB tmpfs at ``folder``, as seen by one process (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    def command(self, argv: list[str]) -> list[str]:
        """``argv``, run where ``folder`` is the small disk."""
        return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                _MOUNT.format(size=SIZE), str(self.folder), *argv]

    @property
    def path(self) -> Path:
        """The folder as the test reaches it (plain files only: see the module docstring)."""
        assert self.process is not None, "attach the process first"
        return Path(f"/proc/{self.process.pid}/root") / self.folder.relative_to("/")

    def attach(self, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        """Wait until ``process`` (started from ``command``) has mounted the disk."""
        self.process = process
        deadline = time.monotonic() + timeout
        while not (self.path / ".mounted").exists():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("cannot mount a small tmpfs in a user namespace (unshare "
                            f"exited with {process.poll()}): see the process's output")
            time.sleep(0.02)

    def start(self) -> None:
        """Let the command run."""
        (self.path / ".go").touch()

    def fill(self) -> None:
        """Leave no free byte.

        SQLite appends to its WAL file until a checkpoint (every 1,000 pages), so its next
        commit needs space; on a disk that had filled up long ago it would first reuse the
        WAL's old space.
        """
        block = 1 << 16
        with (self.path / "filler").open("ab", buffering=0) as out:
            while block:
                try:
                    out.write(bytes(block))
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    block //= 2             # down to the last byte

    def free(self) -> None:
        """Give the space back."""
        (self.path / "filler").unlink(missing_ok=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> SmallDisk:
    """A small disk for one process of the test (see the module docstring)."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    return SmallDisk(folder)
