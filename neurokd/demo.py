"""``neurokd demo``: the whole flow, data → teacher → SNN → netx → Lava → verify, in one run directory."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from neurokd import pipeline
from neurokd.config import RunConfig, config_to_dict
from neurokd.fileio import RunDir, write_json, write_yaml
from neurokd.hardware import load_profile
from neurokd.log import Log
from neurokd.metrics import plots
from neurokd.metrics.report import demo_table



def run_demo(cfg: RunConfig, out: str | Path, force: bool = False, progress: bool = True,
             log: Log = print, inputs: Sequence[Optional[str]] = (), ignore_fit: bool = False
             ) -> Dict[str, Any]:
    """Run every stage and write ``out/`` with config.yaml, teacher.pt, snn.pt, network.net,
    metrics.json, report.json/.md (what the SNN costs on the chip) and plots. ``out`` appears only
    when the whole run succeeded; ``inputs`` (files the run reads) may not lie inside it. A student
    that does not fit one chip of the profile is refused before training, unless ``ignore_fit``."""
    from neurokd.deploy.lava_run import resolve_backend
    from neurokd.metrics import energy
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
        from neurokd.deploy.export import read_meta

        log(f"lava: running the first {cfg.lava.samples} test samples and comparing every output "
            "spike with PyTorch")
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
            radio = pipeline.radio_report(ds, {f"DNN teacher ({cfg.teacher.model})": (teacher, {}),
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
    if radio is not None:
        from neurokd.metrics.radio import summary_lines

        for line in summary_lines(radio):
            log(line)
    log(f"run directory: {out}")
    return metrics
