"""Helpers shared by the benchmark scripts: confidence intervals, per-dataset result files, the
cells a benchmark runs in parallel, and the activity and energy columns of the result tables.

**Cells.** A cell is one unit of work of a benchmark (one dataset × seed × method, say) whose
result is a small JSON dict. ``run_cells`` runs the cells that are not stored yet in ``jobs``
worker processes (forked, one torch thread each, each in a process group of its own), or as
one-CPU tasks on a Ray cluster, by the package's scheduler (``neurokd.parallel.Workers``), and
writes each finished cell atomically to ``<out>/<stem>_cells/<key>.json`` together with the
config it was computed for. The next run skips a stored cell whose config is unchanged, so an
interrupted benchmark resumes where it stopped; a changed config (or ``fresh``) runs it again.
A cell may need others (one teacher for many students): it starts once they are done and
receives their results; files they leave for it (checkpoints) go to the benchmark's cache folder
under a name made from the producing cell's config (``artifact``), and a producer runs again
when a cell that needs it must run and its files are gone. SIGINT, SIGTERM and SIGHUP end every worker together with its own children; the cells
already stored stay. The tables are built from the stored cells once they are all there, so they
do not depend on the number of workers or the order the cells finished in.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np


def t_interval(x: np.ndarray) -> List[float]:
    """95% Student-t interval of the mean of ``x`` (e.g. paired differences over seeds)."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return [float("nan"), float("nan")]
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return [float(x.mean() - half), float(x.mean() + half)]


ROOT = Path(__file__).resolve().parents[1]
# checkpoints that cells hand to the cells that need them (``runs/`` is not tracked by git)
CACHE = ROOT / "runs" / "benchmark-cache"


def parser(doc: str, datasets: List[str], seeds: Optional[int]) -> argparse.ArgumentParser:
    """The options every benchmark shares: --datasets, --seeds (unless None), --mnist-dir, --out."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=list(datasets), choices=list(datasets))
    if seeds is not None:
        ap.add_argument("--seeds", type=int, default=seeds)
    ap.add_argument("--mnist-dir", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    return ap


def cell_options(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of a benchmark that runs cells: --jobs, --fresh, --ray, --cache, --summarize."""
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="cells run at once, each in its own process with one torch thread "
                         "(default: the CPU count)")
    ap.add_argument("--fresh", action="store_true",
                    help="run every cell again, even those stored with the same config")
    ap.add_argument("--ray", metavar="ADDRESS",
                    help="run the cells as one-CPU tasks on this Ray cluster (host:port, "
                         "ray://host:port or auto; the optional ray extra); the cache folder must "
                         "be reachable from every node")
    ap.add_argument("--cache", default=str(CACHE),
                    help="folder for the checkpoints that cells hand to each other")
    ap.add_argument("--summarize", action="store_true",
                    help="run nothing: rebuild the tables from the stored cells (datasets without "
                         "all their cells are kept from the stored results file)")
    return ap


def keep_other_datasets(path: Path, results: Dict, running: List[str]) -> Dict:
    """Results of datasets not run now are kept from an earlier run with the same seeds."""
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("seeds") == results["seeds"]:
            for name, r in old.get("datasets", {}).items():
                if name not in running:
                    results["datasets"][name] = r
    return results


def write_results(out: Path, stem: str, results: Dict, markdown: Callable[[Dict], str]) -> None:
    """Write ``<stem>.json`` and its rendering ``<stem>.md`` in ``out``, each atomically."""
    from neurokd.fileio import atomic_path, write_json

    write_json(out / f"{stem}.json", results)
    with atomic_path(out / f"{stem}.md") as md:
        md.write_text(markdown(results))


def run_benchmark(stem: str, out: Path, datasets: List[str], seeds: List[int],
                  run_one: Callable[[str, Path], Dict], markdown: Callable[[Dict], str],
                  plot: Optional[Callable[[Dict, Path], None]] = None, **extra) -> Dict:
    """Run ``run_one(dataset, workdir)`` for each dataset in this process and write
    ``<stem>.json`` and ``<stem>.md`` (and ``<stem>.png`` with ``plot``) in ``out`` after every
    dataset; other datasets' results are kept from an earlier run with the same seeds."""
    results = {"date": time.strftime("%Y-%m-%d"), "seeds": seeds, "datasets": {}, **extra}
    results = keep_other_datasets(out / f"{stem}.json", results, datasets)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for name in datasets:
            started = time.time()
            results["datasets"][name] = run_one(name, Path(tmp))
            results["datasets"][name].update(date=time.strftime("%Y-%m-%d"),
                                             seconds=time.time() - started)
            results["seconds"] = time.time() - t0
            write_results(out, stem, results, markdown)
            if plot is not None:
                plot(results, out / f"{stem}.png")
    print(markdown(results))
    return results


# ---------------------------------------------------------------- cells
_KEY = re.compile(r"[A-Za-z0-9_.=+-]+(/[A-Za-z0-9_.=+-]+)*")


def canonical(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists, keys strings), for comparing a
    cell's config with the stored one."""
    return json.loads(json.dumps(value, sort_keys=True))


def config_hash(config: Dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(canonical(config), sort_keys=True).encode()).hexdigest()[:12]


def artifact(cache: str | Path, stem: str, key: str, config: Dict[str, Any], suffix: str = ".pt") -> str:
    """Where the cell ``key`` computed with ``config`` leaves a file for the cells that need it:
    a name that changes with the config, so runs of other sizes never share it."""
    return str(Path(cache) / stem / f"{key.replace('/', '_')}-{config_hash(config)}{suffix}")


@dataclass
class Cell:
    """One unit of work: ``fn(config, deps, **args)`` returns a JSON-able dict.

    ``config``: everything the result depends on; stored with the result, and a stored cell whose
    config differs is run again. ``args``: what the result does not depend on (paths of data and
    checkpoints). ``needs``: keys of the cells whose results ``deps`` maps by key (their configs
    are part of this cell's). ``artifacts``: files this cell writes for the cells that need it.
    ``fn`` must be a module-level function (Ray pickles it; a forked worker calls it directly)."""

    key: str
    fn: Callable[..., Dict[str, Any]]
    config: Dict[str, Any]
    args: Dict[str, Any] = field(default_factory=dict)
    needs: Tuple[str, ...] = ()
    artifacts: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _KEY.fullmatch(self.key):
            raise ValueError(f"cell key {self.key!r}: use letters, digits, _ . = + - and / only")


class CellStore:
    """One JSON file per finished cell under ``folder``: ``{key, config, result, seconds, date}``,
    written atomically."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def record(self, key: str) -> Optional[Dict[str, Any]]:
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and "result" in data else None

    def load(self, key: str, config: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """The stored result of ``key`` if it was computed with ``config``, else None."""
        rec = self.record(key)
        if rec is None or rec.get("config") != canonical(config):
            return None
        return rec

    def save(self, key: str, config: Dict[str, Any], result: Dict[str, Any], seconds: float) -> None:
        from neurokd.fileio import write_json

        write_json(self.path(key), {"key": key, "config": canonical(config), "result": result,
                                    "seconds": seconds, "date": time.strftime("%Y-%m-%d")})


@dataclass
class CellRun:
    """What ``run_cells`` did: every available result by key (stored or run now), the cells run
    now, those that failed (key → message) and those skipped because a cell they need failed."""

    results: Dict[str, Dict[str, Any]]
    records: Dict[str, Dict[str, Any]]
    ran: List[str]
    failed: Dict[str, str]
    skipped: List[str]


def effective_configs(cells: Sequence[Cell]) -> Dict[str, Dict[str, Any]]:
    """Each cell's config with the configs of the cells it needs (under ``needs``), recursively."""
    by_key = {c.key: c for c in cells}
    out: Dict[str, Dict[str, Any]] = {}

    def config(key: str, path: Tuple[str, ...]) -> Dict[str, Any]:
        if key in out:
            return out[key]
        if key in path:
            raise ValueError(f"cells need each other in a circle: {' → '.join(path + (key,))}")
        cell = by_key[key]
        missing = [k for k in cell.needs if k not in by_key]
        if missing:
            raise ValueError(f"cell {key} needs {', '.join(missing)}, which is not planned")
        c = canonical(cell.config)
        if cell.needs:
            c = {**c, "needs": {k: config(k, path + (key,)) for k in cell.needs}}
        out[key] = c
        return c

    for cell in cells:
        config(cell.key, ())
    return out


def _run_cell(fn, config, deps, args) -> Dict[str, Any]:
    """One cell, in its worker: the result is checked to be a JSON dict here, so that a bad one
    fails in the worker with its cell's name."""
    result = fn(config, deps, **args)
    if not isinstance(result, dict):
        raise TypeError(f"a cell returns a dict, this one returned {type(result).__name__}")
    json.dumps(result, allow_nan=True)
    return result


def run_cells(cells: Sequence[Cell], store: Optional[CellStore], jobs: Optional[int] = None,
              ray_address: Optional[str] = None, fresh: bool = False,
              log: Callable[[str], None] = print,
              on_result: Optional[Callable[[str, "CellRun"], None]] = None) -> CellRun:
    """Run the cells of ``cells`` that are not stored with their config (all with ``fresh``), at
    most ``jobs`` at once (default: the CPU count), each in a forked worker process, or as tasks on
    the Ray cluster at ``ray_address``; store each finished one (``store``) and call
    ``on_result(key, run)`` (``run``: the ``CellRun`` so far). With ``store`` None every cell runs
    and nothing is stored (for work that stores its own results). A failed cell is logged with its
    name and traceback and stores nothing; the cells that need it are skipped. SIGINT, SIGTERM and
    SIGHUP end every worker and raise ``neurokd.interrupts.Interrupted``. The workers are the
    package's (``neurokd.parallel.Workers``), one process per cell."""
    from neurokd.interrupts import signals_to_exceptions
    from neurokd.parallel import Workers

    configs = effective_configs(cells)
    by_key = {c.key: c for c in cells}
    if len(by_key) != len(cells):
        raise ValueError("two cells have the same key")
    records: Dict[str, Dict[str, Any]] = {}
    if not fresh and store is not None:
        for c in cells:
            rec = store.load(c.key, configs[c.key])
            if rec is not None:
                records[c.key] = rec
    todo = {c.key for c in cells if c.key not in records}
    # a stored producer runs again when a cell that needs it runs and its files are gone
    changed = True
    while changed:
        changed = False
        for c in cells:
            if c.key in todo:
                for k in c.needs:
                    if k not in todo and any(not Path(a).exists() for a in by_key[k].artifacts):
                        todo.add(k)
                        changed = True
    queue = [c for c in cells if c.key in todo]  # the plan's order
    run = CellRun(results={k: r["result"] for k, r in records.items()}, records=records, ran=[],
                  failed={}, skipped=[])
    if not queue:
        log(f"{len(cells)} cells, all stored")
        return run
    # the benchmark scripts and this module are not installed: Ray sends their code with the task
    backend = Workers(jobs or os.cpu_count() or 1, ray_address, reuse=False,
                      ship={c.fn.__module__ for c in cells} | {__name__})
    log(f"{len(cells)} cells: {len(cells) - len(queue)} stored, {len(queue)} to run, "
        f"{backend.slots} at once" + (f" on the Ray cluster {ray_address}" if ray_address else ""))
    started: Dict[str, float] = {}
    finished_now: set = set()
    t0 = time.time()
    try:
        with signals_to_exceptions():
            while queue or backend.running:
                for cell in list(queue):
                    if len(backend.running) >= backend.slots:
                        break
                    # wait for what it needs; a producer run again must finish first too
                    if any(k in run.failed or k in run.skipped for k in cell.needs):
                        queue.remove(cell)
                        run.skipped.append(cell.key)
                        log(f"skipped {cell.key}: it needs a cell that failed")
                        continue
                    if not all(k in run.results and (k not in todo or k in finished_now)
                               for k in cell.needs):
                        continue
                    queue.remove(cell)
                    backend.start(cell.key, _run_cell, cell.fn, cell.config,
                                  {k: run.results[k] for k in cell.needs}, cell.args)
                    started[cell.key] = time.time()
                    log(f"started {cell.key}")
                for key, outcome in backend.wait(timeout=0.5):
                    finished_now.add(key)
                    done = len(finished_now)
                    if outcome.ok:
                        value, seconds = outcome.value, float(outcome.seconds)
                        if store is not None:
                            store.save(key, configs[key], value, seconds)
                        run.results[key] = value
                        run.records[key] = store.record(key) if store is not None else {
                            "result": value, "seconds": seconds, "date": time.strftime("%Y-%m-%d")}
                        run.ran.append(key)
                        log(f"[{done}/{len(todo)}] {key}: done in {seconds:.1f} s "
                            f"({len(backend.running)} running, {len(queue)} waiting, "
                            f"{time.time() - t0:.0f} s so far)")
                        if on_result is not None:
                            on_result(key, run)
                    else:
                        run.failed[key] = outcome.error
                        log(f"[{done}/{len(todo)}] {key}: FAILED: {outcome.error}")
                        if outcome.traceback:
                            log(f"{key}: {outcome.traceback.rstrip()}")
    except BaseException:
        n = len(backend.running)
        backend.stop()
        log(f"stopped: ended {n} running cell(s); the {len(run.ran)} finished now are stored: "
            "run the same command again to resume")
        raise
    finally:
        backend.close()
    if run.failed or run.skipped:
        log(f"{len(run.failed)} cell(s) failed: {', '.join(run.failed)}"
            + (f"; {len(run.skipped)} skipped" if run.skipped else ""))
    return run


# ---------------------------------------------------------------- a benchmark made of cells
@dataclass
class CellBenchmark:
    """A benchmark whose every dataset is a list of cells (``plan(dataset)``) and whose table
    entry for a dataset is ``summarize(dataset, results by key)``, built once all of its cells
    are stored. ``refresh(results)`` adds what is derived for the whole results dict (energy
    priced with the hardware profile, also for datasets kept from an earlier results file)."""

    stem: str
    plan: Callable[[str], List[Cell]]
    summarize: Callable[[str, Dict[str, Dict[str, Any]]], Dict[str, Any]]
    markdown: Callable[[Dict[str, Any]], str]
    plot: Optional[Callable[[Dict[str, Any], Path], None]] = None
    refresh: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    def write(self, out: Path, datasets: Sequence[str], seeds: List[int],
              plans: Dict[str, List[Cell]], run: CellRun) -> Dict[str, Any]:
        """``<stem>.json``, ``.md`` (and ``.png``): datasets whose cells are all available are
        summarised from them; the others are kept from the results file if its seeds match."""
        from neurokd.fileio import atomic_path, write_json

        path = out / f"{self.stem}.json"
        old = json.loads(path.read_text()) if path.is_file() else None
        if old is not None and old.get("seeds") != seeds:
            old = None
        complete = [n for n in datasets if all(c.key in run.results for c in plans[n])]
        if complete:
            results = {"date": time.strftime("%Y-%m-%d"), "seeds": seeds, "datasets": {},
                       **self.extra}
            if old is not None:
                for name, r in old.get("datasets", {}).items():
                    if name not in complete:
                        results["datasets"][name] = r
            for name in complete:
                keys = [c.key for c in plans[name]]
                r = self.summarize(name, {k: run.results[k] for k in keys})
                recs = [run.records.get(k, {}) for k in keys]
                r["date"] = max((x.get("date", "") for x in recs), default="")
                r["seconds"] = float(sum(x.get("seconds", 0.0) for x in recs))
                results["datasets"][name] = r
        elif old is not None:
            results = old
        else:
            return {}
        if self.refresh is not None:
            results = self.refresh(results)
        write_json(path, results)
        with atomic_path(out / f"{self.stem}.md") as md:
            md.write_text(self.markdown(results))
        if self.plot is not None and results["datasets"]:
            self.plot(results, out / f"{self.stem}.png")
        return results

    def main(self, args: argparse.Namespace, datasets: Sequence[str], seeds: List[int]) -> int:
        """Run (or, with ``--summarize``, only summarise) the cells of ``datasets``; the exit
        status: 0, 1 when a cell failed, 128 + the signal's number when one ended the run."""
        from neurokd.interrupts import Interrupted

        out = Path(args.out)
        store = CellStore(out / f"{self.stem}_cells")
        plans = {name: self.plan(name) for name in datasets}
        cells = [c for name in datasets for c in plans[name]]
        if args.summarize:
            configs = effective_configs(cells)
            records = {c.key: r for c in cells if (r := store.load(c.key, configs[c.key]))}
            run = CellRun({k: r["result"] for k, r in records.items()}, records, [], {}, [])
        else:
            owner = {c.key: name for name in datasets for c in plans[name]}
            written: set = set()

            def on_result(key: str, so_far: CellRun) -> None:
                # a dataset's table as soon as its last cell is stored
                name = owner[key]
                if name not in written and all(c.key in so_far.results for c in plans[name]):
                    written.add(name)
                    self.write(out, datasets, seeds, plans, so_far)

            try:
                run = run_cells(cells, store, args.jobs, args.ray, args.fresh, on_result=on_result)
            except Interrupted as exc:
                return 128 + exc.signum
            except KeyboardInterrupt:
                return 130
        results = self.write(out, datasets, seeds, plans, run)
        if results:
            print(self.markdown(results))
        return 1 if run.failed or run.skipped else 0


# ---------------------------------------------------------------- activity and energy columns
ACTIVITY = ("synops", "neuron_updates", "active_neuron_updates", "spikes_out", "events_in")


def measure_activity(model, meta: Dict[str, Any], ds, seed: int, samples: Optional[int]) -> Dict[str, Any]:
    """Per-inference activity of an SNN on the test samples (the first ``samples``; all when
    None), as ``neurokd.metrics.energy.measure`` counts it: what the energy columns are priced
    from. ``accuracy`` is on the same samples."""
    from neurokd.metrics.energy import measure

    m = measure(model, meta, ds, seed=seed, samples=samples or None)
    return {**{k: float(m[k]) for k in ACTIVITY}, "neurons": int(m["neurons"]),
            "window": int(m["window"]), "samples": int(m["samples"]), "hardware": m["hardware"],
            "accuracy": float(m["accuracy"])}


def dnn_macs(model, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates per sample of a DNN (``neurokd.metrics.energy.teacher_macs``)."""
    from neurokd.metrics.energy import teacher_macs

    return int(teacher_macs(model, input_shape)["macs"])


def profile_energy(hardware: str = "loihi2"):
    """The energy figures of a hardware profile (None when it gives none)."""
    from neurokd.hardware import load_profile

    return load_profile(hardware).energy


def snn_energy_j(counts: Dict[str, float], hardware: str = "loihi2") -> Optional[float]:
    """Energy per inference of measured per-inference ``counts`` on ``hardware``, by the energy
    report's formula (``neurokd.metrics.energy``)."""
    from neurokd.metrics.energy import snn_energy

    e = profile_energy(hardware)
    return None if e is None else float(snn_energy(counts, e)["total"])


def snn_energy_bounds_j(synops: float, neuron_updates: float, hardware: str = "loihi2"
                        ) -> Optional[List[float]]:
    """Energy per inference when only the synaptic operations and the neuron updates are known:
    the lower bound counts every update inactive and no output spike, the upper bound every
    update active and one spike per neuron and step (the most there can be)."""
    low = snn_energy_j({"synops": synops, "neuron_updates": neuron_updates,
                        "active_neuron_updates": 0.0, "spikes_out": 0.0}, hardware)
    high = snn_energy_j({"synops": synops, "neuron_updates": neuron_updates,
                         "active_neuron_updates": neuron_updates, "spikes_out": neuron_updates},
                        hardware)
    return None if low is None else [low, high]


def dnn_energy_j(macs: float, hardware: str = "loihi2") -> Optional[Dict[str, float]]:
    """A DNN's arithmetic energy per sample on a conventional processor, fp32 and int8: the energy
    report's definition (``energy_dnn``: MACs · E_MAC) with the profile's MAC figures."""
    e = profile_energy(hardware)
    if e is None:
        return None
    return {"fp32": macs * e.mac_fp32_pj * 1e-12, "int8": macs * e.mac_int8_pj * 1e-12}


def spec_neuron_updates(spec, timesteps: int, hardware: str = "loihi2") -> float:
    """Neuron updates per inference of a network of ``spec`` at ``timesteps`` input frames, from
    its architecture alone: every neuron at every step of the window (T frames and one trailing
    frame per spiking layer), as the activity counts define them."""
    from neurokd.hardware import load_profile
    from neurokd.metrics.resources import layer_resources

    neurons = sum(r.neurons for r in layer_resources(spec, load_profile(hardware)))
    return float(neurons * (timesteps + spec.num_spiking_layers))


def mean_activity(per_seed: Sequence[Optional[Dict[str, Any]]]) -> Optional[Dict[str, float]]:
    """Mean per-inference counts over seeds; None unless every seed recorded them."""
    if not per_seed or any(p is None for p in per_seed):
        return None
    return {k: float(np.mean([p[k] for p in per_seed])) for k in ACTIVITY}


def joules(value: Optional[float]) -> str:
    from neurokd.metrics.energy import joules

    return joules(value)


def energy_figures_lines(results: Dict[str, Any], teacher: bool = False) -> List[str]:
    """The energy figures a table was priced with, and their sources (``teacher``: the table has
    a DNN teacher, priced by its MACs)."""
    from neurokd.metrics.energy import figures_line

    e = results.get("energy_figures")
    if not e:
        return []
    hw = results.get("hardware", "loihi2")
    lines = figures_line(hw, e, digital=False)  # these tables are priced per event
    dnn = (" The DNN teacher's: its MACs · E_MAC in 32-bit float on a conventional processor, "
           "arithmetic only (a lower bound)." if teacher else "")
    return ["Energy per inference on the chip: synops · E_synop + neuron updates · E_update "
            "(active or inactive) + output spikes · E_spike, from the activity measured on the "
            "test samples (`neurokd.metrics.energy`; static power, host input and hops between "
            f"tiles not counted).{dnn} Figures of the `{hw}` profile:", "",
            *(lines if teacher else lines[:1])]


def fmt_synops(activity: Optional[Dict[str, float]]) -> str:
    return f"{activity['synops']:.3g}" if activity else "—"


def cell_data(config: Dict[str, Any], data_dir: Optional[str]):
    """The dataset of a cell's ``budget`` and the cell's configuration (its budget and seed)."""
    from neurokd import pipeline
    from neurokd.config import build_config

    overrides = list(config["budget"]) + ([f"data.data_dir={data_dir}"] if data_dir else [])
    ds = pipeline.load_data(build_config(overrides=overrides))
    return ds, build_config(overrides=overrides + [f"seed={config['seed']}"])


def teacher_macs_from_architecture(r: Dict) -> int:
    """MACs of a dataset's teacher from its budget alone (the architecture; weights do not
    change the count): for results stored before the teacher's MACs were recorded."""
    from neurokd import pipeline
    from neurokd.config import build_config
    from neurokd.models.teachers import build_teacher

    cfg = build_config(overrides=list(r["budget"]))
    ds = pipeline.load_data(cfg)
    model = build_teacher(cfg.teacher.model, ds.input_shape, ds.num_classes, hidden=cfg.teacher.hidden)
    return dnn_macs(model, ds.input_shape)


def refresh_energy(results: Dict, rows: Callable[[Dict], Any], teacher: bool) -> Dict:
    """Energy per inference, priced with the loihi2 profile, of every spiking row (``rows(r)``
    yields a dataset result's rows) that recorded its activity and, with ``teacher``, of each
    dataset's teacher; the teacher's MACs from its architecture where the run did not record
    them."""
    results["hardware"] = hw = "loihi2"
    e = profile_energy(hw)
    results["energy_figures"] = e.model_dump() if e is not None else None
    for r in results["datasets"].values():
        if teacher:
            if r.get("teacher_macs") is None:
                r["teacher_macs"] = teacher_macs_from_architecture(r)
                r["teacher_macs_from"] = "architecture"
            r["teacher_energy_j"] = dnn_energy_j(r["teacher_macs"], hw)
        for row in rows(r):
            if row.get("activity"):
                row["energy_j"] = snn_energy_j(row["activity"], hw)
    return results
