"""Atomic writes: a crash at any point leaves the old file or the new one, never a broken one."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from common import fileio, provenance


def test_crash_between_write_and_rename_leaves_the_old_record(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    fileio.atomic_write_json(path, {"status": "running", "history": [1]})

    def crash(*_):
        raise KeyboardInterrupt("killed between write and rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        fileio.atomic_write_json(path, {"status": "complete", "history": [1, 2]})
    assert json.loads(path.read_text()) == {"history": [1], "status": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temporary file left behind


def test_json_is_strict_and_numpy_values_are_plain(tmp_path):
    path = tmp_path / "r.json"
    fileio.atomic_write_json(path, {"a": np.float32(0.5), "b": float("nan"), "c": np.arange(3), "d": np.int64(2)})
    assert json.loads(path.read_text()) == {"a": 0.5, "b": None, "c": [0, 1, 2], "d": 2}


def test_npz_round_trip_and_sha256(tmp_path):
    path = tmp_path / "p.npz"
    fileio.atomic_save_npz(path, scores=np.eye(3), ids=np.array(["a", "b", "c"]))
    loaded = np.load(path)
    np.testing.assert_array_equal(loaded["scores"], np.eye(3))
    assert list(loaded["ids"]) == ["a", "b", "c"]
    assert len(fileio.sha256_file(path)) == 64


def test_provenance_names_versions_and_command():
    info = provenance.provenance()
    assert info["versions"]["torch"] and info["versions"]["numpy"] == np.__version__
    assert isinstance(info["command"], str)
