"""``neurokd demo``: the whole flow, data → teacher → SNN → netx → Lava → verify, in one run directory."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict

from neurokd import pipeline
from neurokd.config import RunConfig, config_to_dict
from neurokd.fileio import RunDir, write_json, write_yaml
from neurokd.metrics import plots
from neurokd.metrics.report import demo_table

Log = pipeline.Log


def run_demo(cfg: RunConfig, out: str | Path, force: bool = False, progress: bool = True,
             log: Log = print) -> Dict[str, Any]:
    """Run every stage and write ``out/`` with config.yaml, teacher.pt, snn.pt, network.net,
    metrics.json and plots. ``out`` appears only when the whole run succeeded."""
    seconds: Dict[str, float] = {}
    pipeline.check_config(cfg)
    with RunDir(out, force=force) as run:
        write_yaml(run / "config.yaml", config_to_dict(cfg))
        t0 = time.perf_counter()
        ds = pipeline.load_data(cfg, log)
        pipeline.student_spec(cfg, ds)  # a spec that does not fit the data fails before training
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
        net_path = pipeline.export_snn(snn, run / "network.net", meta, ds, log)
        seconds["export"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        from neurokd.deploy.export import read_meta

        v = pipeline.verify(snn, net_path, ds, read_meta(net_path), cfg.lava.samples,
                            cfg.lava.backend, seed=cfg.seed, progress=progress)
        seconds["lava"] = time.perf_counter() - t0
        torch_spikes, lava_spikes = v.pop("_torch_spikes"), v.pop("_lava_spikes")

        plots.training_curves({"teacher": t_metrics.pop("teacher_history"),
                               "snn": s_metrics.pop("snn_history")}, run / "training_curves.png")
        plots.spike_raster(torch_spikes, lava_spikes, run / "spike_raster.png")

        metrics: Dict[str, Any] = {"dataset": ds.name, "encoder": cfg.student.encoder,
                                   "timesteps": cfg.student.timesteps, "seed": cfg.seed,
                                   "data_notes": ds.notes, "test_samples": len(ds.test)}
        metrics.update(t_metrics)
        metrics.update(s_metrics)
        metrics.update(v)
        metrics["seconds"] = seconds
        write_json(run / "metrics.json", metrics)
    log(demo_table(metrics))
    log(f"run directory: {out}")
    return metrics
