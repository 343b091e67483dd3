"""Work directories that never outlive their process: removed when done, and after a kill by the next
process that looks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from include.common.workdir import remove_abandoned, work_directory

PREFIX = "export-"

# A process that makes a work directory, writes into it, says where, and waits to be killed.
HOLDER = f"""
import sys, time
from include.common.workdir import work_directory
with work_directory(sys.argv[1], {PREFIX!r}) as path:
    (path / "part.bin").write_bytes(b"x" * 1000)
    print(path, flush=True)
    time.sleep(600)
"""


def hold(parent: Path) -> tuple[subprocess.Popen, Path]:
    """A process holding a work directory under ``parent``, once it has made it."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(parent)], stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert line, f"the holder exited with {process.wait()}"
    return process, Path(line.strip())


def test_the_directory_goes_with_the_block_however_it_ends_and_open_files_stay_readable(tmp_path):
    with work_directory(tmp_path / "new", PREFIX) as path:
        (path / "archive.zip").write_bytes(b"zipped")
        archive = (path / "archive.zip").open("rb")
    with pytest.raises(RuntimeError), work_directory(tmp_path / "new", PREFIX) as failed:
        (failed / "half.zip").write_bytes(b"half")
        raise RuntimeError("the export failed")

    with archive:
        assert archive.read() == b"zipped"
    assert path.name.startswith(PREFIX) and path.parent == tmp_path / "new"
    assert list((tmp_path / "new").iterdir()) == []


def test_only_directories_no_living_process_holds_are_removed(tmp_path):
    killed, abandoned = hold(tmp_path)
    living, in_use = hold(tmp_path)
    (tmp_path / f"{PREFIX}file.txt").write_text("a file, not a work directory")
    (tmp_path / "other").mkdir()
    try:
        os.kill(killed.pid, signal.SIGKILL)  # no finally runs: the directory stays behind
        killed.wait()
        assert (abandoned / "part.bin").exists()
        with work_directory(tmp_path, PREFIX) as own:
            removed = remove_abandoned(tmp_path, PREFIX)

            assert removed == [abandoned]
            assert (in_use / "part.bin").exists() and own.is_dir()
    finally:
        living.kill()
        living.wait()
    assert {path.name for path in tmp_path.iterdir()} == {f"{PREFIX}file.txt", in_use.name, "other"}
    assert remove_abandoned(tmp_path, PREFIX) == [in_use]


def test_a_parent_that_does_not_exist_has_nothing_abandoned(tmp_path):
    assert remove_abandoned(tmp_path / "missing", PREFIX) == []
