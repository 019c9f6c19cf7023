"""The benchmarks' cells: parallel worker processes, resumable per cell, failures reported by name,
signals that end every child, and tables that do not depend on how the cells were run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch  # imported before the workers fork, as in the benchmark scripts

from tests.conftest import REPO, process_alive

BENCH = REPO / "benchmarks"
sys.path.insert(0, str(BENCH))
import common  # noqa: E402
from common import Cell, CellBenchmark, CellStore, run_cells  # noqa: E402


def _quiet(_: str) -> None:
    pass


# ---------------------------------------------------------------- tiny cell functions
def square(config, deps, log=None, pause=0.0):
    """config["x"] squared, plus the sum of the squares it needs; appends its key to ``log``."""
    t0 = time.time()
    if log:
        with open(log, "a") as fh:
            fh.write(config["name"] + "\n")
    time.sleep(pause)
    return {"value": config["x"] ** 2 + sum(d["value"] for d in deps.values()),
            "pid": os.getpid(), "threads": torch.get_num_threads(), "start": t0, "end": time.time()}


def broken(config, deps):
    raise ValueError(f"no square for {config['x']}")


def not_json(config, deps):
    return {"value": object()}


def dies(config, deps):
    os._exit(3)


def producer(config, deps, path):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(str(config["x"] * 10))
    return {"value": config["x"]}


def consumer(config, deps, path, log):
    with open(log, "a") as fh:
        fh.write(config["name"] + "\n")
    return {"value": int(Path(path).read_text()) + config["x"]}


def _cells(log, xs=(1, 2, 3, 4), pause=0.0):
    return [Cell(f"d/s{x}", square, {"name": f"s{x}", "x": x}, {"log": str(log), "pause": pause})
            for x in xs]


def _lines(path: Path):
    return sorted(path.read_text().split()) if path.exists() else []


# ---------------------------------------------------------------- tests
def test_cells_run_in_parallel_worker_processes(tmp_path):
    log = tmp_path / "log"
    run = run_cells(_cells(log, pause=0.6), CellStore(tmp_path / "cells"), jobs=2, log=_quiet)
    assert sorted(run.ran) == ["d/s1", "d/s2", "d/s3", "d/s4"]
    assert {k: r["value"] for k, r in run.results.items()} == {"d/s1": 1, "d/s2": 4, "d/s3": 9, "d/s4": 16}
    pids = {r["pid"] for r in run.results.values()}
    assert os.getpid() not in pids and len(pids) == 4  # one process per cell
    assert {r["threads"] for r in run.results.values()} == {1}
    spans = sorted((r["start"], r["end"]) for r in run.results.values())
    overlaps = sum(1 for (s0, e0), (s1, _) in zip(spans, spans[1:]) if s1 < e0)
    assert overlaps >= 2  # two at a time, never more than two:
    assert all(s2 >= e0 for (_, e0), _, (s2, _) in zip(spans, spans[1:], spans[2:]))
    stored = json.loads((tmp_path / "cells" / "d" / "s3.json").read_text())
    assert stored["config"] == {"name": "s3", "x": 3} and stored["result"]["value"] == 9


def test_a_stored_cell_is_not_run_again(tmp_path):
    log = tmp_path / "log"
    store = CellStore(tmp_path / "cells")
    first = run_cells(_cells(log), store, jobs=2, log=_quiet)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "cells").rglob("*.json")}
    again = run_cells(_cells(log), store, jobs=2, log=_quiet)
    assert again.ran == [] and again.results == first.results
    assert _lines(log) == ["s1", "s2", "s3", "s4"]  # each ran once
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cells").rglob("*.json")} == before
    # an interrupted run (here: a cell file removed) resumes with only what is missing
    store.path("d/s2").unlink()
    resumed = run_cells(_cells(log), store, jobs=2, log=_quiet)
    assert resumed.ran == ["d/s2"]
    assert {k: r["value"] for k, r in resumed.results.items()} == {"d/s1": 1, "d/s2": 4, "d/s3": 9, "d/s4": 16}
    assert resumed.results["d/s1"] == first.results["d/s1"]  # read back, not run
    fresh = run_cells(_cells(log), store, jobs=2, fresh=True, log=_quiet)
    assert sorted(fresh.ran) == ["d/s1", "d/s2", "d/s3", "d/s4"]


def test_a_changed_config_runs_the_cell_and_those_that_need_it_again(tmp_path):
    log = tmp_path / "log"
    store = CellStore(tmp_path / "cells")

    def plan(x_base):
        base = Cell("base", square, {"name": "base", "x": x_base}, {"log": str(log)})
        top = Cell("top", square, {"name": "top", "x": 2}, {"log": str(log)}, needs=("base",))
        other = Cell("other", square, {"name": "other", "x": 5}, {"log": str(log)})
        return [top, base, other]  # listed before what it needs: it waits for it anyway

    first = run_cells(plan(3), store, jobs=2, log=_quiet)
    assert first.results["top"]["value"] == 4 + 9
    second = run_cells(plan(4), store, jobs=2, log=_quiet)
    assert sorted(second.ran) == ["base", "top"]
    assert second.results["top"]["value"] == 4 + 16 and second.results["other"]["value"] == 25
    assert _lines(log) == sorted(["base", "top", "other", "base", "top"])
    assert json.loads(store.path("top").read_text())["config"]["needs"]["base"]["x"] == 4


def test_a_producer_whose_files_are_gone_runs_again_for_the_cells_that_need_it(tmp_path):
    log = tmp_path / "log"
    store = CellStore(tmp_path / "cells")
    art = common.artifact(tmp_path / "cache", "t", "p", {"x": 7})

    def plan(y):
        return [Cell("p", producer, {"x": 7}, {"path": art}, artifacts=(art,)),
                Cell("c", consumer, {"name": "c", "x": y}, {"path": art, "log": str(log)}, needs=("p",))]

    assert run_cells(plan(1), store, jobs=2, log=_quiet).results["c"]["value"] == 71
    Path(art).unlink()
    assert run_cells(plan(1), store, jobs=2, log=_quiet).ran == []  # nothing needs the file now
    again = run_cells(plan(2), store, jobs=2, log=_quiet)
    assert again.ran == ["p", "c"] and again.results["c"]["value"] == 72
    assert common.artifact(tmp_path / "cache", "t", "p", {"x": 8}) != art


def test_a_failure_is_reported_with_its_cell_and_leaves_no_file(tmp_path):
    lines = []
    cells = [Cell("ok", square, {"name": "ok", "x": 2}),
             Cell("bad/raises", broken, {"x": 3}),
             Cell("bad/json", not_json, {"x": 4}),
             Cell("bad/dies", dies, {"x": 5}),
             Cell("after", square, {"name": "after", "x": 1}, needs=("bad/raises",))]
    run = run_cells(cells, CellStore(tmp_path / "cells"), jobs=2, log=lines.append)
    assert run.failed["bad/raises"] == "ValueError: no square for 3"
    assert run.failed["bad/json"].startswith("TypeError")
    assert run.failed["bad/dies"] == "the worker died without a result (exit code 3)"
    assert run.skipped == ["after"] and run.ran == ["ok"]
    text = "\n".join(lines)
    assert "bad/raises: FAILED: ValueError: no square for 3" in text
    assert "raise ValueError" in text  # the worker's traceback, under the cell's name
    files = sorted(str(p.relative_to(tmp_path / "cells")) for p in (tmp_path / "cells").rglob("*"))
    assert files == ["ok.json"]  # no half-written cell, no temporary file


def _summarize(name, results):
    values = [results[f"{name}/s{x}"]["value"] for x in (1, 2, 3, 4)]
    return {"values": values, "mean": sum(values) / len(values)}


def _markdown(results):
    return "\n".join(f"{n}: {r['values']} mean {r['mean']}" for n, r in results["datasets"].items())


def test_the_summary_equals_a_sequential_run(tmp_path):
    def plan(name):
        return [Cell(f"{name}/s{x}", square, {"name": f"{name}{x}", "x": x * len(name)}) for x in (1, 2, 3, 4)]

    bench = CellBenchmark("toy", plan, _summarize, _markdown)
    outs = []
    for jobs in (2, 1):
        out = tmp_path / f"jobs{jobs}"
        args = type("Args", (), dict(out=str(out), jobs=jobs, ray=None, fresh=False, summarize=False))
        assert bench.main(args, ["ab", "abc"], [0]) == 0
        outs.append(out)
    # the cells' functions called one after the other in this process
    sequential = {n: _summarize(n, {c.key: c.fn(c.config, {}, **c.args) for c in plan(n)})
                  for n in ("ab", "abc")}
    assert sequential["ab"]["values"] == [4, 16, 36, 64]
    for out in outs:
        results = json.loads((out / "toy.json").read_text())
        assert {n: {k: r[k] for k in ("values", "mean")} for n, r in results["datasets"].items()} == sequential
        assert (out / "toy.md").read_text() == _markdown({"datasets": sequential})
    # --summarize rebuilds the same table from the stored cells alone
    (outs[0] / "toy.md").unlink()
    args = type("Args", (), dict(out=str(outs[0]), jobs=2, ray=None, fresh=False, summarize=True))
    assert bench.main(args, ["ab", "abc"], [0]) == 0
    assert (outs[0] / "toy.md").read_text() == _markdown({"datasets": sequential})


SIGNAL_SCRIPT = textwrap.dedent("""
    import os, subprocess, sys, time
    sys.path.insert(0, {bench!r})
    from common import Cell, CellStore, run_cells
    from neurokd.interrupts import Interrupted

    def hold(config, deps, folder):
        child = subprocess.Popen(["sleep", "60"])
        with open(os.path.join(folder, config["name"] + ".pids"), "w") as fh:
            fh.write(f"{{os.getpid()}} {{child.pid}}")
        time.sleep(60)
        return {{}}

    if __name__ == "__main__":
        cells = [Cell(f"c{{i}}", hold, {{"name": f"c{{i}}"}}, {{"folder": sys.argv[1]}}) for i in range(2)]
        try:
            run_cells(cells, CellStore(os.path.join(sys.argv[1], "cells")), jobs=2)
        except Interrupted as exc:
            sys.exit(128 + exc.signum)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_signal_ends_every_worker_and_its_children(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SIGNAL_SCRIPT.format(bench=str(BENCH)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        while len(list(tmp_path.glob("*.pids"))) < 2 and time.time() < deadline:
            time.sleep(0.1)
        pids = [int(p) for f in tmp_path.glob("*.pids") for p in f.read_text().split()]
        assert len(pids) == 4 and all(process_alive(p) for p in pids)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert "stopped: ended 2 running cell(s)" in output
    deadline = time.time() + 5
    while any(process_alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if process_alive(p)]
    assert not (tmp_path / "cells").exists() or not list((tmp_path / "cells").rglob("*"))


RAY_SCRIPT = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {bench!r})
    import ray
    import common
    from common import Cell, CellStore, run_cells

    def cube(config, deps):  # defined in __main__ and calling common, as a benchmark script's cells
        import torch
        return {{"value": common.canonical(config)["x"] ** 3 + sum(d["value"] for d in deps.values()),
                "threads": torch.get_num_threads()}}

    if __name__ == "__main__":
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            cells = [Cell(f"d/s{{x}}", cube, {{"x": x}}) for x in (1, 2, 3)]
            cells.append(Cell("d/top", cube, {{"x": 0}}, needs=("d/s2", "d/s3")))
            run = run_cells(cells, CellStore(os.path.join(sys.argv[1], "cells")), ray_address="auto",
                            log=lambda _: None)
            print(sorted((k, r["value"], r["threads"]) for k, r in run.results.items()), run.failed)
        finally:
            ray.shutdown()
""")


def test_cells_run_as_ray_tasks(tmp_path):
    pytest.importorskip("ray")
    script = tmp_path / "ray_run.py"
    script.write_text(RAY_SCRIPT.format(bench=str(BENCH)))
    res = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                         timeout=240, env=dict(os.environ, OMP_NUM_THREADS="1", RAY_AUTH_MODE="disabled"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == (
        "[('d/s1', 1, 1), ('d/s2', 8, 1), ('d/s3', 27, 1), ('d/top', 35, 1)] {}")
    assert sorted(p.name for p in (tmp_path / "cells" / "d").iterdir()) == [
        "s1.json", "s2.json", "s3.json", "top.json"]


def test_energy_columns_of_old_cells_are_derived_from_the_architecture_honestly():
    """Cells stored before the activity counts keep their synops only: the table then shows an
    energy range from synops and the neuron updates the architecture gives. On real networks the
    architecture's neuron updates equal the measured ones, the stored synops equal the measured
    ones, and the exact energy lies inside the range."""
    from neurokd.config import ConvertConfig, build_config
    from neurokd import pipeline
    from neurokd.hardware import load_profile
    from neurokd.metrics.activity import measured_synops
    from neurokd.models.cuba.net import SpikingNet
    from neurokd.models.teachers import build_teacher
    from neurokd.convert.dnn import convert_dnn, dnn_stages, stages_spec
    from neurokd.training import encoded_batches

    cfg = build_config(overrides=["data.dataset=digits", "student.hidden=16", "student.timesteps=4"])
    ds = pipeline.load_data(cfg)
    torch.manual_seed(0)
    snn = SpikingNet(pipeline.student_spec(cfg, ds), load_profile("loihi2"))
    teacher = build_teacher("cnn", ds.input_shape, ds.num_classes, hidden=[4, 8]).eval()
    conv, _ = convert_dnn(teacher, ds, 6, ConvertConfig(method="plain", calibration=64), load_profile("loihi2"),
                          progress=False)
    cases = [(snn, pipeline.snn_meta(cfg, ds), pipeline.student_spec(cfg, ds), 4),
             (conv, {"encoder": "direct", "timesteps": 6},
              stages_spec(dnn_stages(teacher, ds.input_shape), ds.input_shape), 6)]
    for model, meta, spec, T in cases:
        act = common.measure_activity(model, meta, ds, seed=0, samples=64)
        assert act["samples"] == 64 and act["synops"] > 0
        assert act["neuron_updates"] == common.spec_neuron_updates(spec, T)
        prepare = pipeline.make_prepare(meta["encoder"], T, model.window_pad)
        xb = torch.cat([x for x, _ in encoded_batches(ds.test, prepare, 0, limit=64)])
        assert measured_synops(model, xb)["synops"] == pytest.approx(act["synops"], rel=1e-12)
        exact = common.snn_energy_j(act)
        low, high = common.snn_energy_bounds_j(act["synops"], act["neuron_updates"])
        assert low < exact < high
    macs = common.dnn_macs(teacher, ds.input_shape)
    # conv1: 4×8×8 outputs × 1·3·3, conv2 (stride 2): 8×4×4 outputs × 4·3·3, head: 10 × 8·4·4
    assert macs == 4 * 64 * 9 + 8 * 16 * 36 + 10 * 128
    assert common.dnn_energy_j(macs)["fp32"] == pytest.approx(macs * load_profile("loihi2").energy.mac_fp32_pj * 1e-12)


@pytest.mark.parametrize("stem", ["qat", "convert", "kd_ablation", "rf"])
def test_stored_results_render_with_and_without_the_energy_fields(stem):
    """The committed results files render (with their energy columns), and so do results written
    before those fields existed: every energy cell of an SNN row is then "—" with its footnote."""
    import importlib
    import copy

    module = importlib.import_module(stem)
    results = json.loads((BENCH / "results" / f"{stem}.json").read_text())
    text = module.markdown(results)
    assert "energy/inference" in text and "synops/inference" in text
    old = copy.deepcopy(results)
    for key in ("hardware", "energy_figures"):
        old.pop(key, None)
    groups = old.get("datasets") or old.get("tasks")
    for r in groups.values():
        for key in ("teacher_macs", "teacher_macs_from", "teacher_energy_j"):
            r.pop(key, None)
        rows = r.get("receivers") or {m: row for m, by in r["methods"].items() for row in
                                      (by.values() if stem in ("qat", "convert") else [by])}
        for row in rows.values():
            for key in ("activity", "activity_per_seed", "energy_j", "energy_j_bounds", "macs",
                        "macs_from", "neuron_updates_from_architecture"):
                row.pop(key, None)
    text = module.markdown(old)
    table = [line for line in text.splitlines() if line.startswith("| ") and "SNN" in line
             or (stem != "rf" and line.startswith("| ") and "---" not in line and "method" not in line)]
    assert table and all("—" in line for line in table)
    assert "not recorded" in text and "Energy per inference on the chip" not in text


def test_the_energy_scoreboard_summarises_and_answers_from_its_cells():
    """benchmarks/energy.py: gaps paired by seed, each network's energy under its pricings, and the
    answer to "is the SNN cheaper?" from the cheapest network within tolerance of the teacher."""
    import energy

    def cell(dnn_acc, sdnn_acc, cuba_acc, sdnn_j):
        nb = {"dense_ops": 10.0, "effective_macs": 5.0, "effective_acs": 0.0}
        parts = {"arithmetic": 1e-9, "weights": 1e-9, "state": 1e-9, "events": 1e-9}
        net = {"synops": 5.0, "neurobench": nb, "digital_parts": parts}
        return {"dnn": {"figure": dnn_acc, "macs": 100.0, "pricings": {
                    "digital_fp32": 8e-6, "digital_int8": 2e-6, "mcu_int8": 45e-6,
                    "arithmetic_fp32": 4e-7, "arithmetic_int8": 2e-8}},
                "networks": {"SDNN": {**net, "figure": sdnn_acc,
                                      "pricings": {"digital": sdnn_j, "loihi": 3e-6}},
                             "CUBA, rate input": {**net, "figure": cuba_acc,
                                                  "pricings": {"digital": 1e-6, "loihi": 1e-6}}}}

    results = {"digits/s0": cell(0.98, 0.975, 0.90, 1e-6), "digits/s1": cell(0.96, 0.955, 0.88, 3e-6)}
    r = energy.summarize("digits", results, [0, 1])
    assert r["rows"]["SDNN"]["gap"]["per_seed"] == pytest.approx([0.005, 0.005])
    assert r["rows"]["SDNN"]["energy"]["digital"]["mean"] == pytest.approx(2e-6)
    v = r["verdict"]
    assert v["SDNN"]["within_tolerance"] and not v["CUBA, rate input"]["within_tolerance"]
    assert v["SDNN"]["digital_vs_dnn_int8"] == pytest.approx(1.0)  # 2 µJ against 2 µJ
    assert v["SDNN"]["loihi_vs_dnn_mcu"] == pytest.approx(3e-6 / 45e-6)
    text = energy.markdown({"datasets": {"digits": r}, "seeds": [0, 1]})
    assert ("**digits**: yes under the digital model: the cheapest SNN within 1 points of the "
            "teacher, SDNN, costs 1× the int8 DNN") in text
    assert "SDNN costs 0.0667× (within the goal of 1/10)" in text
