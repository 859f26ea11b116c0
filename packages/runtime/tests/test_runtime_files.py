"""Secrets are written owner-only, at every moment and whatever the file was before."""

from __future__ import annotations

import stat
from pathlib import Path

from cryptopipe.runtime import write_private


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_secret_is_owner_only_even_over_a_file_that_was_readable(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "kafka.password"
    assert write_private(path, "s3cret\n") == path
    assert (path.read_text(), _mode(path)) == ("s3cret\n", 0o600)

    path.chmod(0o644)  # e.g. a tool rewrote it with its umask
    write_private(path, b"\x00key")
    assert (path.read_bytes(), _mode(path)) == (b"\x00key", 0o600)

    write_private(path, "cert", mode=0o644)  # a certificate may be public
    assert _mode(path) == 0o644
