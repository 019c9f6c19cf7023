"""One recipe per command that writes a run directory: what the directory holds, and the stages
(``neurokd.pipeline``) that fill it. The CLI and notebooks call these alike. Each recipe takes the
resolved configuration, the run directory (a path, or a ``RunDir`` the caller made early to check
``--out`` before any work), ``progress`` and ``log`` (where progress lines go), and returns what
the run measured. The directory appears only when the whole run succeeded (``fileio.RunDir``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from torch import nn

from neurokd import pipeline, runtime
from neurokd.config import RunConfig, config_to_dict
from neurokd.data.datasets import Dataset
from neurokd.errors import NeurokdError
from neurokd.fileio import RunDir, atomic_path, write_json, write_yaml
from neurokd.hardware import load_profile
from neurokd.log import Log
from neurokd.metrics import energy, plots
from neurokd.metrics.radio import radio_report
from neurokd.registry import Registry

SOURCE_KEYS = ("teacher_source", "ensemble_sources")  # recorded in metrics.json, not tabled


def run_dir(out: str | Path | RunDir, command: str, force: bool = False,
            inputs: Sequence[Optional[str]] = ()) -> RunDir:
    """``out`` as a run directory for ``command`` (checked now: new or empty, or a previous run
    with ``force``; holding none of ``inputs``)."""
    return out if isinstance(out, RunDir) else RunDir(out, force=force, inputs=inputs,
                                                      command=command)


def radio_lines(report: Optional[Dict[str, Any]], log: Log) -> None:
    """A radio report's summary, one line each (nothing for other datasets)."""
    if report is not None:
        from neurokd.metrics.radio import summary_lines

        for line in summary_lines(report):
            log(line)


def teacher_label(cfg: RunConfig, model: nn.Module) -> str:
    """The teacher's name in tables and plots: its file or factory when it was brought from
    elsewhere, else its architecture."""
    from neurokd.interop.teachers import is_foreign, source_label

    return source_label(model.neurokd_source) if is_foreign(model) else cfg.teacher.model


def demo(cfg: RunConfig, out: str | Path, force: bool = False, progress: bool = True,
         log: Log = print, inputs: Sequence[Optional[str]] = (), ignore_fit: bool = False
         ) -> Dict[str, Any]:
    """Run every stage and write ``out/`` with config.yaml, teacher.pt, snn.pt, network.net,
    metrics.json, report.json/.md (what the SNN costs on the chip) and plots. ``out`` appears only
    when the whole run succeeded; ``inputs`` (files the run reads) may not lie inside it. A student
    that does not fit one chip of the profile is refused before training, unless ``ignore_fit``."""
    from neurokd.deploy.export import read_meta
    from neurokd.deploy.lava_run import resolve_backend
    from neurokd.metrics.report import demo_table
    from neurokd.metrics.resources import check_fit

    seconds: Dict[str, float] = {}
    cfg = pipeline.as_direct_training(cfg)  # the demo trains its student directly
    pipeline.check_config(cfg)
    resolve_backend(cfg.lava.backend)  # no chip for --backend loihi2: say so before training
    with RunDir(out, force=force, inputs=inputs, command="demo") as run:
        write_yaml(run / "config.yaml", config_to_dict(cfg))
        t0 = time.perf_counter()
        ds = pipeline.load_data(cfg, log)
        # a spec that does not fit the data, or the machine's memory, fails before training
        pipeline.check_memory(cfg, ds, pipeline.student_spec(cfg, ds), ("training", "lava"))
        if not ignore_fit:
            check_fit(pipeline.student_spec(cfg, ds), load_profile(cfg.hardware))
        seconds["data"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        teacher, t_metrics = pipeline.train_teacher(cfg, ds, progress, log)
        pipeline.save_teacher(run / "teacher.pt", teacher, cfg, ds)
        seconds["teacher"] = time.perf_counter() - t0
        log(f"teacher: test accuracy {t_metrics['teacher_accuracy']:.4f}")

        t0 = time.perf_counter()
        snn, s_metrics = pipeline.train_snn(cfg, ds, progress, log)
        pipeline.save_snn(run / "snn.pt", snn, cfg, ds)
        seconds["snn"] = time.perf_counter() - t0
        log(f"snn: test accuracy {s_metrics['snn_accuracy']:.4f}")

        t0 = time.perf_counter()
        meta = pipeline.snn_meta(cfg, ds)
        net_path = pipeline.export_snn(snn, run / "network.net", meta, ds, log, check_fit=not ignore_fit)
        seconds["export"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        which = "test samples spread over every SNR" if pipeline.is_radio(ds) else "first test samples"
        log(f"lava: running {cfg.lava.samples} {which} and comparing every output spike with PyTorch")
        v = pipeline.verify(snn, net_path, ds, read_meta(net_path), cfg.lava.samples,
                            cfg.lava.backend, seed=cfg.seed, progress=progress)
        seconds["lava"] = time.perf_counter() - t0
        torch_spikes, lava_spikes = v.pop("_torch_spikes"), v.pop("_lava_spikes")
        labels = v.pop("_labels")

        plots.training_curves({"teacher": t_metrics.pop("teacher_history"),
                               "snn": s_metrics.pop("snn_history")}, run / "training_curves.png",
                              kept={"teacher": t_metrics["teacher_best_epoch"],
                                    "snn": s_metrics["snn_best_epoch"]})
        plots.spike_raster(torch_spikes, lava_spikes, run / "spike_raster.png", labels=labels,
                           class_names=ds.class_names)
        radio = None
        if pipeline.is_radio(ds):
            t0 = time.perf_counter()
            radio = radio_report(ds, {f"DNN teacher ({cfg.teacher.model})": (teacher, {}),
                                               "SNN (PyTorch = Lava)": (snn, meta)}, run, cfg.seed)
            seconds["radio_report"] = time.perf_counter() - t0
        energy.run_report(run, ds, energy.networks([(snn, meta)], teacher, cfg.teacher.model),
                          cfg.seed, log=log)

        metrics: Dict[str, Any] = {"dataset": ds.name, "encoder": cfg.student.encoder,
                                   "timesteps": cfg.student.timesteps, "seed": cfg.seed,
                                   "data_notes": ds.notes, "test_samples": len(ds.test)}
        metrics.update(t_metrics)
        metrics.update(s_metrics)
        metrics.update(v)
        if radio is not None:
            metrics["radio"] = radio
        metrics["seconds"] = seconds
        write_json(run / "metrics.json", metrics)
    log(demo_table(metrics))
    radio_lines(radio, log)
    log(f"run directory: {out}")
    return metrics


# ---------------------------------------------------------------- train-teacher, train-snn, distill
def train(cfg: RunConfig, which: str, out: str | Path | RunDir, teacher=None, *,
          force: bool = False, inputs: Sequence[Optional[str]] = (), progress: bool = True,
          log: Log = print) -> Tuple[Dict[str, Any], Dataset]:
    """``which``: ``teacher`` (a DNN), ``snn`` (a student trained directly) or ``distill`` (a
    student from ``teacher``, a checkpoint, ONNX file or ``TeacherRef``). Writes config.yaml, the
    checkpoint(s), training_curves.png, metrics.json, the energy report for a student and the
    radio report on radio data. Returns the metrics and the dataset."""
    if which == "snn":
        cfg = pipeline.as_direct_training(cfg)
    pipeline.check_config(cfg)
    rd = run_dir(out, {"teacher": "train-teacher", "snn": "train-snn"}.get(which, which), force,
                 inputs)
    with rd as run:
        write_yaml(run / "config.yaml", config_to_dict(cfg))
        ds = pipeline.load_data(cfg, log)
        spec = pipeline.student_spec(cfg, ds) if which != "teacher" else None
        if spec is not None and "sdnn" in (spec.family, cfg.student.neuron):
            return _train_sdnn(cfg, which, run, ds, spec, teacher, progress, log), ds
        if spec is not None and (cfg.convert.sparsity or cfg.convert.target_rate is not None):
            raise NeurokdError("convert.sparsity and convert.target_rate (--sparsity, "
                               "--target-rate) train sigma-delta students only (--neuron sdnn)")
        dnn = None
        if which == "distill":
            model, dnn, metrics = pipeline.train_distilled(cfg, ds, teacher, progress, log)
            pipeline.save_snn(run / "snn.pt", model, cfg, ds)
            if "teacher_accuracy_after" in metrics:
                _save_colearned(run, dnn, cfg, ds, rd.final, log)
            history = metrics.pop("snn_history")
        elif which == "teacher":
            model, metrics = pipeline.train_teacher(cfg, ds, progress, log)
            pipeline.save_teacher(run / "teacher.pt", model, cfg, ds)
            history = metrics.pop("teacher_history")
            dnn = model
        else:
            model, metrics = pipeline.train_snn(cfg, ds, progress, log)
            pipeline.save_snn(run / "snn.pt", model, cfg, ds)
            history = metrics.pop("snn_history")
        best = metrics[f"{'teacher' if which == 'teacher' else 'snn'}_best_epoch"]
        plots.training_curves({which: history}, run / "training_curves.png", kept={which: best})
        if pipeline.is_radio(ds):
            receivers = {}
            if dnn is not None:
                receivers[f"DNN teacher ({teacher_label(cfg, dnn)})"] = (dnn, {})
            if which != "teacher":
                receivers["SNN"] = (model, pipeline.snn_meta(cfg, ds))
            metrics["radio"] = radio_report(ds, receivers, run, cfg.seed)
        if which != "teacher":  # what the SNN costs on the chip: report.json, .md and the plot
            label = teacher_label(cfg, dnn) if dnn is not None else cfg.teacher.model
            energy.run_report(run, ds, energy.networks([(model, pipeline.snn_meta(cfg, ds))], dnn,
                                                       label), cfg.seed)
        write_json(run / "metrics.json", metrics)
    return metrics, ds


def _train_sdnn(cfg: RunConfig, which: str, run: Path, ds: Dataset, spec, teacher, progress: bool,
                log: Log) -> Dict[str, Any]:
    """``train-snn`` / ``distill`` of a sigma-delta student (``neurokd.convert.sdnn.train_student``):
    snn.pt, network.net, training_curves.png, the energy and radio reports, metrics.json."""
    from neurokd.convert.sdnn import train_student
    from neurokd.interop.teachers import load_dnn
    from neurokd.models.spec import NeuronSpec

    dnn = None
    if which == "distill":
        if cfg.distill.method not in ("kd", "none"):
            raise NeurokdError(f"a sigma-delta student learns from a teacher by kd only, not "
                               f"{cfg.distill.method!r} (use --method kd)")
        if cfg.distill.method == "kd":
            if teacher is None:
                raise NeurokdError("distill --method kd needs a --teacher")
            dnn = load_dnn(teacher, ds.input_shape, ds.num_classes, convertible=False)[0].eval()
    spec = spec.model_copy(update={"neuron": NeuronSpec(type="sdnn")})
    model, metrics = train_student(cfg, ds, spec, dnn, progress, log)
    plots.training_curves({which: metrics.pop("snn_history")}, run / "training_curves.png",
                          kept={which: metrics["snn_best_epoch"]})
    return _write_sdnn(run, model, dnn, cfg, ds, metrics, log)


def _write_sdnn(run: Path, model, dnn: Optional[nn.Module], cfg: RunConfig, ds: Dataset,
                metrics: Dict[str, Any], log: Log) -> Dict[str, Any]:
    """What every sigma-delta run directory holds: snn.pt, network.net, the radio report (radio
    data), the energy report and metrics.json, beside the DNN ``dnn`` where there is one."""
    from neurokd.models.checkpoint import save_checkpoint
    from neurokd.models.sigma_delta.net import EncodedSDNN
    from neurokd.models.sigma_delta.netx import write_netx

    meta = {**pipeline.snn_meta(cfg, ds), "timesteps": model.timesteps}
    save_checkpoint(run / "snn.pt", "snn", model.arch(), model.state_dict(), meta)
    write_netx(model, run / "network.net", meta)
    label = teacher_label(cfg, dnn) if dnn is not None else cfg.teacher.model
    if pipeline.is_radio(ds):
        receivers = {} if dnn is None else {f"DNN teacher ({label})": (dnn, {})}
        receivers["sigma-delta SNN (PyTorch = Lava)"] = (EncodedSDNN(model, cfg.student.encoder), {})
        metrics["radio"] = radio_report(ds, receivers, run, cfg.seed)
    energy.run_report(run, ds, energy.networks([(model, meta)], dnn, label), cfg.seed, log=log)
    write_json(run / "metrics.json", metrics)
    return metrics


def _save_colearned(run: Path, teacher: nn.Module, cfg: RunConfig, ds: Dataset, out: Path,
                    log: Log) -> None:
    """The co-learned teacher: a neurokd checkpoint, or, for a DNN brought from elsewhere (its
    architecture is not neurokd's to rebuild), its weights for --teacher-weights."""
    from neurokd.interop.teachers import is_foreign, save_weights

    if not is_foreign(teacher):
        pipeline.save_teacher(run / "teacher.pt", teacher, cfg, ds)
        return
    save_weights(run / "teacher_weights.pt", teacher)
    source = teacher.neurokd_source
    ref = source.get("factory") or source.get("path")
    log(f"co-learned teacher weights: {out}/teacher_weights.pt (use them with --teacher {ref} "
        f"--teacher-weights {out}/teacher_weights.pt)")


# ---------------------------------------------------------------- quantize
def quantize(model: nn.Module, meta: Dict[str, Any], cfg: RunConfig, out: str | Path | RunDir,
             kd_from=None, *, force: bool = False,
             inputs: Sequence[Optional[str]] = (), progress: bool = True, log: Log = print,
             ignore_fit: bool = False) -> Tuple[Dict[str, Any], nn.Module, Dataset]:
    """Quantization-aware training of the float SNN ``model`` (its checkpoint ``meta``) for
    ``cfg.hardware``. Writes config.yaml, snn.pt (the quantized network), network.net,
    training_curves.png, the energy and radio reports and metrics.json. Returns the metrics, the
    quantized network and the dataset."""
    pipeline.check_names(cfg)
    if kd_from is not None:
        from neurokd.interop.teachers import as_ref

        ref = as_ref(kd_from)
        if ref.kind == "checkpoint":
            pipeline.load_checkpoint(ref.ref)  # a bad --kd-from fails before any work
    rd = run_dir(out, "quantize", force, inputs)
    ds = pipeline.load_data(cfg)
    with rd as run:
        write_yaml(run / "config.yaml", config_to_dict(cfg))
        qmodel, metrics = pipeline.quantize(model, meta, cfg, ds, kd_from, progress, log,
                                            check_fit=not ignore_fit)
        new_meta = pipeline.snn_meta(cfg, ds)
        pipeline.save_snn(run / "snn.pt", qmodel, cfg, ds)
        pipeline.export_snn(qmodel, run / "network.net", new_meta, ds, log=log,
                            check_fit=not ignore_fit)
        if "qat_history" in metrics:
            plots.training_curves({"quantize": metrics.pop("qat_history")},
                                  run / "training_curves.png",
                                  kept={"quantize": metrics["qat_best_epoch"]},
                                  start={"quantize": metrics["qat_start_val_accuracy"]})
        if pipeline.is_radio(ds):
            bits = "/".join(str(b) for b in qmodel.bits)
            metrics["radio"] = radio_report(
                ds, {"SNN, float": (model, meta),
                     f"SNN, {bits} bits (PyTorch = Lava)": (qmodel, new_meta)}, run, cfg.seed)
        energy.run_report(run, ds, energy.networks([(model, meta), (qmodel, new_meta)]), cfg.seed)
        write_json(run / "metrics.json", metrics)
    return metrics, qmodel, ds


# ---------------------------------------------------------------- convert
def convert(cfg: RunConfig, teacher, out: str | Path | RunDir, *, force: bool = False,
            inputs: Sequence[Optional[str]] = (), progress: bool = True, log: Log = print,
            ignore_fit: bool = False) -> Tuple[Dict[str, Any], Dataset]:
    """A trained DNN (``teacher``: a checkpoint, ONNX file or ``TeacherRef``) converted into a
    quantized SNN of ``cfg.student.timesteps`` steps. Writes config.yaml, snn.pt, network.net,
    rate_tracking.png, training_curves.png (qkd), the energy and radio reports and metrics.json.
    Returns the metrics and the dataset."""
    from neurokd.interop.teachers import load_dnn

    if cfg.convert.neuron == "sdnn":
        return _convert_sdnn(cfg, teacher, out, force=force, inputs=inputs, log=log,
                             ignore_fit=ignore_fit, progress=progress)
    pipeline.check_names(cfg)
    rd = run_dir(out, "convert", force, inputs)
    ds = pipeline.load_data(cfg)
    with rd as run:
        write_yaml(run / "config.yaml", config_to_dict(cfg))
        snn, metrics = pipeline.convert(cfg, ds, teacher, progress, log, check_fit=not ignore_fit)
        dnn = load_dnn(teacher, ds.input_shape, ds.num_classes)[0]
        pairs = metrics.pop("_rate_pairs")
        snn_meta = pipeline.snn_meta(cfg, ds)
        pipeline.save_snn(run / "snn.pt", snn, cfg, ds)
        pipeline.export_snn(snn, run / "network.net", snn_meta, ds, log=log,
                            check_fit=not ignore_fit)
        plots.rate_scatter(pairs, run / "rate_tracking.png",
                           names=[f"{row['kind']} {i}" for i, row in enumerate(metrics["layers"])])
        if "qkd_history" in metrics:
            plots.training_curves({"qkd": metrics.pop("qkd_history")}, run / "training_curves.png",
                                  kept={"qkd": metrics["qkd_best_epoch"]},
                                  start={"qkd": metrics["qkd_start_val_accuracy"]})
        if pipeline.is_radio(ds):
            metrics["radio"] = radio_report(
                ds, {f"DNN teacher ({teacher_label(cfg, dnn)})": (dnn, {}),
                     f"converted SNN, T = {cfg.student.timesteps} (PyTorch = Lava)": (snn, snn_meta)},
                run, cfg.seed)
        energy.run_report(run, ds, energy.networks([(snn, snn_meta)], dnn, teacher_label(cfg, dnn)),
                          cfg.seed)
        write_json(run / "metrics.json", metrics)
    return metrics, ds


def _convert_sdnn(cfg: RunConfig, teacher, out, *, force: bool, inputs: Sequence[Optional[str]],
                  log: Log, ignore_fit: bool, progress: bool) -> Tuple[Dict[str, Any], Dataset]:
    """``convert --neuron sdnn``: config.yaml, snn.pt, network.net (netx, sigma-delta), the
    energy and radio reports, metrics.json and (method qkd) training_curves.png."""
    from neurokd.convert.sdnn import convert_run
    from neurokd.interop.teachers import load_dnn

    pipeline.check_names(cfg)
    rd = run_dir(out, "convert", force, inputs)
    ds = pipeline.load_data(cfg)
    with rd as run:
        write_yaml(run / "config.yaml", config_to_dict(cfg))
        dnn, source = load_dnn(teacher, ds.input_shape, ds.num_classes)
        snn, metrics = convert_run(cfg, ds, dnn, log=log, check_fit=not ignore_fit, progress=progress)
        if "finetune_history" in metrics:
            plots.training_curves({"sdnn fine-tuning": metrics.pop("finetune_history")},
                                  run / "training_curves.png",
                                  kept={"sdnn fine-tuning": metrics["finetune_best_epoch"]})
        metrics["teacher_source"] = source
        _write_sdnn(run, snn, dnn, cfg, ds, metrics, log)
    return metrics, ds


# ---------------------------------------------------------------- search
@dataclass
class SearchRun:
    """What ``search`` found: the ranked rows (ranked.csv), the summary (search.json), the
    trained candidates of ``train_top`` (or None), the chosen candidate, and the dataset."""

    rows: List[Dict[str, Any]]
    summary: Dict[str, Any]
    trained: Optional[List[Dict[str, Any]]]
    chosen: Any
    seconds_per_arch: float
    ds: Dataset = field(repr=False)


def search(cfg: RunConfig, space, budget, out: str | Path | RunDir, *, proxy: str = "synops",
           strategy: str = "evolution", candidates: int = 100, workers: int = 1,
           ray_address: Optional[str] = None, all_proxies: bool = False,
           tau_grad: Optional[float] = None, train_top: Optional[int] = None,
           train_epochs: int = 5, force: bool = False, inputs: Sequence[Optional[str]] = (),
           progress: bool = True, log: Log = print, device: Optional[str] = None) -> SearchRun:
    """Training-free architecture search of ``space`` under ``budget`` (``metrics.resources.
    Budget``) on ``cfg``'s data; with ``train_top``, the best candidates trained briefly and the
    best by validation accuracy chosen. Writes config.yaml, ranked.csv, spec.yaml (the chosen
    architecture with its T and encoder), pareto.png, search.json, and top/ with ``train_top``."""
    import csv

    from neurokd.models.spec import save_spec
    from neurokd.nas.proxies import PROXIES
    from neurokd.nas.search import best_trained, run_search

    profile = load_profile(cfg.hardware)
    PROXIES.get(proxy)
    probe_device = str(runtime.resolve_device(device)) if device else "cpu"  # before any work
    rd = run_dir(out, "search", force, inputs)
    ds = pipeline.load_data(cfg, log=log)
    with rd as run:
        write_yaml(run / "config.yaml", config_to_dict(cfg))
        res = run_search(ds, space, profile, budget, proxy, strategy, candidates, workers,
                         cfg.student.encoder, seed=cfg.seed, progress=progress,
                         ray_address=ray_address,
                         score_proxies=PROXIES.names() if all_proxies else None, tau_grad=tau_grad,
                         device=probe_device)
        rows = [dict(rank=i + 1, **c.row(proxy)) for i, c in enumerate(res["ranked"])]
        with atomic_path(run / "ranked.csv") as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        chosen, chosen_row, trained = res["chosen"], rows[0], None
        if train_top:
            trained = pipeline.train_candidates(res["ranked"][:train_top], ds, cfg,
                                                space.timesteps, train_epochs, run / "top",
                                                progress=progress, log=log)
            best = best_trained(trained)
            chosen, chosen_row = res["ranked"][best], dict(rows[best], **trained[best])
        save_spec(run / "spec.yaml", chosen.spec, timesteps=space.window(chosen.spec),
                  encoder=cfg.student.encoder)
        front = res["front"]

        energy = all(c.resources.get("energy_upper_j") for c in res["ranked"])

        def point(c):
            cost = c.resources["energy_upper_j"] if energy else c.resources["synops"]
            return c.resources["cores"], cost, c.scores[proxy]

        plots.pareto([point(c) for c in res["ranked"]], [point(c) for c in front],
                     run / "pareto.png", proxy, "energy / inference, upper bound (J, digital model)"
                     if energy else "synaptic ops / inference")
        summary = {"proxy": proxy, "strategy": strategy, "candidates": len(rows),
                   "scored_proxies": res["scored_proxies"], "probe_tau_grad": tau_grad,
                   "scored_on": f"ray:{ray_address}" if ray_address else f"{workers} processes",
                   "timesteps": space.timesteps, "hardware": profile.name,
                   "budget": {"max_cores": budget.max_cores, "max_memory_bytes": budget.max_memory_bytes,
                              "max_synops": budget.max_synops, "max_energy_j": budget.max_energy_j},
                   "seconds": res["seconds"], "archs_per_second": res["archs_per_second"],
                   "chosen_by": ("validation accuracy after --train-top training" if trained
                                 else f"proxy {proxy}"),
                   "chosen": chosen_row, "chosen_spec": chosen.spec.model_dump(),
                   "pareto_front": [c.row(proxy) for c in front], "space": space.model_dump()}
        if trained is not None:
            summary["train_top"] = {"k": train_top, "epochs": train_epochs, "candidates": trained,
                                    "seconds": sum(t["train_seconds"] for t in trained)}
        write_json(run / "search.json", summary)
    return SearchRun(rows, summary, trained, chosen, res["archs_per_second"], ds)


# ---------------------------------------------------------------- import
def import_graph(cfg: RunConfig, graph: Optional[str | Path], out: str | Path | RunDir,
                 dt: Optional[float] = None, *, force: bool = False,
                 inputs: Sequence[Optional[str]] = (), log: Log = print, snntorch=None
                 ) -> Tuple[Dict[str, Any], Dataset]:
    """A NIR graph, or (``snntorch``, a ``TeacherRef``) an snntorch model written as one into the
    run (graph.nir), imported as a float SNN checkpoint for ``cfg``'s data. Writes config.yaml,
    snn.pt, spec.yaml, metrics.json (the approximations, node by node); returns the metrics."""
    from neurokd.interop.nir import approximation_lines, read_graph
    from neurokd.interop.nir.snntorch_in import write_snntorch_graph
    from neurokd.models.spec import save_spec

    cfg = pipeline.as_direct_training(cfg)  # the run trains nothing: no distillation method
    pipeline.check_names(cfg)
    rd = run_dir(out, "import", force, inputs)
    if graph is not None:
        read_graph(graph)  # a bad graph fails before the data is loaded
    ds = pipeline.load_data(cfg, log)
    with rd as run:
        write_yaml(run / "config.yaml", config_to_dict(cfg))
        notes: List[Dict[str, str]] = []
        if snntorch is not None:
            graph = run / "graph.nir"
            notes, source = write_snntorch_graph(snntorch, ds.input_shape, graph)
            for line in approximation_lines(notes):
                log(line)
        model, meta, metrics = pipeline.import_nir(graph, cfg, ds, dt=dt, log=log)
        if snntorch is not None:
            metrics["approximations"] = notes + metrics["approximations"]
            metrics["source"] = meta["nir"]["source"] = source
            meta["nir"]["approximations"] = metrics["approximations"]
        pipeline.save_checkpoint(run / "snn.pt", "snn", model.arch(), model.state_dict(), meta)
        save_spec(run / "spec.yaml", model.spec, timesteps=cfg.student.timesteps,
                  encoder=cfg.student.encoder)
        write_json(run / "metrics.json", metrics)
    return metrics, ds


# ---------------------------------------------------------------- report
def report(snn: str | Path, teacher=None, out: str | Path | RunDir | None = None,
           *, data_dir: Optional[str] = None, samples: Optional[int] = None, force: bool = False,
           inputs: Sequence[Optional[str]] = (), version: str = "", device: Optional[str] = None
           ) -> Tuple[Dict[str, Any], List[str]]:
    """What the SNN checkpoint ``snn`` costs on the chip, against the DNN ``teacher`` (any form
    ``distill`` takes: a checkpoint, an ONNX file or a ``TeacherRef``): resources, measured
    activity and energy per inference. With ``out``, writes report.json, report.md and the plot
    there (the lock is taken before any work). Returns the report and the names of the files
    written."""
    import contextlib

    from neurokd.interop.teachers import as_ref, is_foreign, load_dnn, source_label

    rd = run_dir(out, "report", force, inputs) if out is not None else None
    written: List[str] = []
    with rd if rd is not None else contextlib.nullcontext() as run:
        model, meta = pipeline.load_snn(snn)
        cfg = pipeline.config_from_meta(meta, data_dir, where=snn)
        ref = as_ref(teacher) if teacher is not None else None
        label = ""
        if ref is not None and ref.kind == "checkpoint":  # the wrong kind fails before the data
            label = str(pipeline.load_checkpoint(ref.ref, "teacher")["arch"].get("model", ""))
        ds = pipeline.load_data(cfg)
        dnn = None
        if ref is not None:
            dnn = load_dnn(ref, ds.input_shape, ds.num_classes, convertible=False)[0]
            label = source_label(dnn.neurokd_source) if is_foreign(dnn) else label
        nets = energy.networks([(model, meta)], dnn, label)
        result = energy.build_report(ds, nets, cfg.seed, samples,
                                     None if device is None else runtime.resolve_device(device))
        result["neurokd"] = {"version": version, "command": "report", "snn": str(snn),
                             "teacher": None if ref is None else ref.ref}
        if run is not None:
            written = [path.name for path in energy.write_report(run, result)]
    return result, written


# ---------------------------------------------------------------- export
@dataclass(frozen=True)
class Exporter:
    """One file format an SNN checkpoint exports to. ``ours(path)``: whether ``path`` is a file
    this exporter wrote (only those may be replaced, with ``force``); ``write(model, meta, out,
    options, log)`` writes it and returns the path and a one-line summary."""

    name: str
    description: str
    ours: Callable[[Path], bool]
    write: Callable[..., Tuple[Path, str]]


EXPORTERS: Registry[Exporter] = Registry("export format")


def _write_netx(model, meta: Dict[str, Any], out: Path, options: Dict[str, Any], log: Log
                ) -> Tuple[Path, str]:
    from neurokd.errors import NeurokdError

    cfg = pipeline.config_from_meta(meta, options.get("data_dir"), where=options["snn"])
    try:
        ds = pipeline.load_data(cfg)
    except NeurokdError as exc:
        ds = None
        log(f"note: 24-bit overflow check skipped, no data ({exc})")
    path = pipeline.export_snn(model, out, meta, ds, log=log, replace=options["force"],
                               check_fit=options.get("check_fit", True))
    return path, (f"netx HDF5, {model.window_pad} trailing zero frames per sample, window "
                  f"{meta['timesteps'] + model.window_pad} steps")


def _write_nir(model, meta: Dict[str, Any], out: Path, options: Dict[str, Any], log: Log
               ) -> Tuple[Path, str]:
    from neurokd.errors import NeurokdError
    from neurokd.interop.nir import DEFAULT_DT, export_nir

    if model.family == "sdnn":
        raise NeurokdError(f"{options['snn']}: NIR has no sigma-delta neuron, so a sigma-delta "
                           "network exports only to netx (--format netx)")
    dt = options.get("dt", DEFAULT_DT)
    path = export_nir(model, out, meta, dt=dt, replace=options["force"])
    kind = "quantized" if model.quantized else "float"
    return path, (f"NIR graph of the {kind} network, dt = {dt:g}; it reads {meta['timesteps']} "
                  f"input frames without Loihi's per-layer delay, so its output at step t is the "
                  f"network's at step t + {model.window_pad}")


def _is_netx(path: Path) -> bool:
    from neurokd.deploy.export import is_neurokd_network

    return is_neurokd_network(path)


def _is_nir(path: Path) -> bool:
    from neurokd.interop.nir import is_neurokd_nir

    return is_neurokd_nir(path)


for _e in (Exporter("netx", "HDF5 for Lava (lava.lib.dl.netx.hdf5.Network); the chip-fit and "
                            "24-bit state checks run first", _is_netx, _write_netx),
           Exporter("nir", "a NIR graph (nir.read, snntorch's import_from_nir)", _is_nir, _write_nir)):
    EXPORTERS.register(_e.name)(_e)


def export(snn: str | Path, out: str | Path, fmt: str = "netx", *, force: bool = False,
           inputs: Sequence[Optional[str]] = (), log: Log = print, **options: Any
           ) -> Tuple[Path, str]:
    """Export the SNN checkpoint ``snn`` to ``out`` in format ``fmt`` (an ``EXPORTERS`` name).
    ``out`` must be new, or (with ``force``) a file the same exporter wrote, and none of
    ``inputs``. ``options``: ``data_dir``, ``check_fit`` (netx), ``dt`` (nir). Returns the path
    written and a one-line summary of it."""
    from neurokd.fileio import check_output_file

    exporter = EXPORTERS.get(fmt)
    check_output_file(out, inputs, force, ours=exporter.ours)
    model, meta = pipeline.load_snn(snn)
    return exporter.write(model, meta, Path(out), dict(options, snn=str(snn), force=force), log)
