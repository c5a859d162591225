"""The learner engine's worker writes snapshots only inside the root its first init gave
(``engine.es_worker``): a snapshot replaces its directory, and any local process can call it."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.es_worker import ESWorkerExtension, _fixed_root, snapshot_target


def test_only_strictly_inside_the_root(tmp_path):
    root = tmp_path / "versions"
    root.mkdir()
    assert snapshot_target(root.resolve(), str(root / "v3")) == (root / "v3").resolve()
    assert snapshot_target(root.resolve(), str(root / "a" / "b")) == (root / "a" / "b").resolve()
    for outside in (root, tmp_path, tmp_path / "other", root / ".." / "escape", Path("/")):
        with pytest.raises(PermissionError):
            snapshot_target(root.resolve(), str(outside))
    with pytest.raises(PermissionError, match="no snapshot_root"):
        snapshot_target(None, str(root / "v3"))


def test_a_symlink_out_of_the_root_is_refused(tmp_path):
    root, victim = tmp_path / "versions", tmp_path / "home"
    root.mkdir()
    victim.mkdir()
    (root / "v9").symlink_to(victim, target_is_directory=True)
    with pytest.raises(PermissionError):
        snapshot_target(root.resolve(), str(root / "v9"))


def test_the_root_is_set_once(tmp_path):
    first = _fixed_root(None, str(tmp_path))
    assert first == tmp_path.resolve()
    assert _fixed_root(first, "") == first  # a re-init that names no root keeps it
    assert _fixed_root(first, str(tmp_path / ".")) == first
    with pytest.raises(PermissionError, match="cannot be moved"):
        _fixed_root(first, "/")
    assert _fixed_root(None, "") is None


def test_the_rpc_refuses_and_removes_nothing(tmp_path):
    """``es_snapshot`` as the engine calls it: an error result, the outside directory intact."""
    root, victim = tmp_path / "versions", tmp_path / "precious"
    root.mkdir()
    victim.mkdir()
    (victim / "data.txt").write_text("keep me")
    worker = ESWorkerExtension()
    worker._es_snapshot_root = root.resolve()
    result = ESWorkerExtension.es_snapshot(worker, out_dir=str(victim))
    assert "PermissionError" in result["error"] and "not inside the snapshot root" in result["error"]
    assert (victim / "data.txt").read_text() == "keep me"
    assert not list(tmp_path.glob(".precious.tmp"))
    unset = ESWorkerExtension.es_snapshot(ESWorkerExtension(), out_dir=str(victim))
    assert "no snapshot_root" in unset["error"] and (victim / "data.txt").exists()
