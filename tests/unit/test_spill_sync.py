"""A spill file the request log creates survives a power cut: its contents and its name (the folder) are synced."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.db import log_writer


def test_a_new_spill_file_syncs_its_folder_and_an_append_only_the_file(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(log_writer.os, "fsync", spy)
    folder = tmp_path / "spill"
    path = folder / "request_log.1.jsonl"
    log_writer._append_synced(folder, path, [b'{"a": 1}\n'])
    assert synced == [str(path), str(folder)]
    synced.clear()
    log_writer._append_synced(folder, path, [b'{"a": 2}\n'])
    assert synced == [str(path)]
    assert path.read_bytes() == b'{"a": 1}\n{"a": 2}\n'
