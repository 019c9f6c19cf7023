import json
import os
import subprocess
import sys

import pytest

from neurokd.errors import NeurokdError
from neurokd.fileio import RUN_MARKER, RunDir, atomic_path, check_output_file, write_json


def test_atomic_path_keeps_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_path_removes_the_folders_it_created_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "a" / "b" / "out.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_without_replace_never_clobbers(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(NeurokdError, match="appeared"):
        with atomic_path(target, replace=False) as tmp:
            tmp.write_text("new")
            target.write_text("someone else's")
    assert target.read_text() == "someone else's"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_run_dir_appears_only_when_whole(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError):
        with RunDir(out) as run:
            (run / "a.txt").write_text("x")
            raise ValueError
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with RunDir(out, command="test") as run:
        (run / "a.txt").write_text("x")
    assert (out / "a.txt").read_text() == "x"
    assert json.loads((out / RUN_MARKER).read_text())["command"] == "test"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no lock or staging left
    with pytest.raises(NeurokdError, match="--force"):
        RunDir(out)
    with RunDir(out, force=True) as run:
        (run / "b.txt").write_text("y")
    assert sorted(p.name for p in out.iterdir()) == [RUN_MARKER, "b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_failed_run_removes_the_parents_it_created(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with RunDir(tmp_path / "x" / "y" / "run"):
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_force_never_replaces_what_neurokd_did_not_write(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(NeurokdError, match="not a neurokd run directory"):
        RunDir(out, force=True)
    assert (out / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize("name", [".", "", "..", "/"])
def test_working_directory_and_its_parents_are_refused(tmp_path, monkeypatch, name):
    work = tmp_path / "work"
    work.mkdir()
    (work / RUN_MARKER).write_text("{}")  # even a folder that looks like a run directory
    (work / "keep.txt").write_text("k")
    monkeypatch.chdir(work)
    with pytest.raises(NeurokdError, match="working directory|empty|root"):
        RunDir(name, force=True)
    assert (work / "keep.txt").read_text() == "k"


def test_files_added_during_a_run_are_kept_and_results_set_aside(tmp_path):
    out = tmp_path / "run"
    with RunDir(out) as run:
        (run / "a.txt").write_text("1")
    with pytest.raises(NeurokdError, match=r"changed during the run.*run\.1"):
        with RunDir(out, force=True) as run:
            (run / "a.txt").write_text("2")
            (out / "notes.txt").write_text("added by the user meanwhile")
    assert (out / "notes.txt").read_text() == "added by the user meanwhile"
    assert (out / "a.txt").read_text() == "1"
    assert (tmp_path / "run.1" / "a.txt").read_text() == "2"


def test_an_empty_existing_directory_is_filled(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with RunDir(out) as run:
        (run / "a.txt").write_text("1")
    assert (out / "a.txt").read_text() == "1"


def test_a_symlinked_output_directory_receives_the_results(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    with RunDir(link) as run:
        (run / "a.txt").write_text("1")
    assert sorted(p.name for p in real.iterdir()) == [RUN_MARKER, "a.txt"]
    assert link.is_symlink()
    with RunDir(link, force=True) as run:
        (run / "b.txt").write_text("2")
    assert sorted(p.name for p in real.iterdir()) == [RUN_MARKER, "b.txt"]


def test_an_input_inside_the_output_is_refused(tmp_path):
    out = tmp_path / "run"
    with RunDir(out) as run:
        (run / "snn.pt").write_text("ckpt")
    with pytest.raises(NeurokdError, match="input"):
        RunDir(out, force=True, inputs=[out / "snn.pt"])
    assert (out / "snn.pt").read_text() == "ckpt"


def test_a_second_concurrent_run_is_refused(tmp_path):
    out = tmp_path / "run"
    code = ("import sys, time; from neurokd.fileio import RunDir\n"
            "with RunDir(sys.argv[1]) as run:\n"
            "    print('in', flush=True); time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "in"
        with pytest.raises(NeurokdError, match="another neurokd run"):
            with RunDir(out):
                pass
    finally:
        child.kill()
        child.wait()


def test_read_only_or_file_parent_is_found_before_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(NeurokdError, match="is a file"):
        RunDir(blocker / "run")
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        with pytest.raises(NeurokdError, match="cannot write"):
            RunDir(ro / "run")


def test_output_file_rules(tmp_path):
    src = tmp_path / "snn.pt"
    src.write_text("ckpt")
    with pytest.raises(NeurokdError, match="input"):
        check_output_file(src, inputs=[src], force=True)
    other = tmp_path / "other.net"
    other.write_text("not ours")
    with pytest.raises(NeurokdError, match="already exists"):
        check_output_file(other)
    with pytest.raises(NeurokdError, match="not written by neurokd"):
        check_output_file(other, force=True, ours=lambda p: False)
    assert check_output_file(other, force=True, ours=lambda p: True) == other
    assert check_output_file(tmp_path / "new.net") == tmp_path / "new.net"
    assert src.read_text() == "ckpt" and other.read_text() == "not ours"
