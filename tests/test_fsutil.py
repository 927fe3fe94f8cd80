"""Atomic writes: whole content or none, and the file modes a plain write would give."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ragline.fsutil import atomic_dir, atomic_write_text


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_and_directories_take_the_umask_mode(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "out" / "a.json", "{}\n")
        with atomic_dir(tmp_path / "index") as d:
            (d / "part").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "out" / "a.json").read_text() == "{}\n"
    assert stat.S_IMODE((tmp_path / "out" / "a.json").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "index").stat().st_mode) == 0o777 & ~umask
    assert (tmp_path / "index" / "part").read_text() == "x"


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("old")

    with pytest.raises(TypeError):
        atomic_write_text(path, 5)  # type: ignore[arg-type]
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
