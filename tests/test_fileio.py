import pytest

from neurokd.errors import NeurokdError
from neurokd.fileio import RunDir, atomic_path, write_json


def test_atomic_path_keeps_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    write_json(target, {"a": 1})
    assert target.read_text().strip().startswith("{")
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_run_dir_appears_only_when_whole(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError):
        with RunDir(out) as run:
            (run / "a.txt").write_text("x")
            raise ValueError
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with RunDir(out) as run:
        (run / "a.txt").write_text("x")
    assert (out / "a.txt").read_text() == "x"
    with pytest.raises(NeurokdError, match="--force"):
        RunDir(out)
    with RunDir(out, force=True) as run:
        (run / "b.txt").write_text("y")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
