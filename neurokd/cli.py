"""``neurokd``: one entry point; subcommands mirror the stages of the flow.

The CLI only parses arguments and calls library functions (``neurokd.pipeline``, ``neurokd.demo``)
that notebooks call too. A NeurokdError becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

from neurokd import __version__
from neurokd.errors import NeurokdError

EXIT_USER_ERROR = 2
EXIT_MISMATCH = 1
FORCE_HELP = ("replace --out if it is a previous neurokd run directory (nothing else is ever "
              "replaced)")


def _config_args(p: argparse.ArgumentParser, out_help: str) -> None:
    g = p.add_argument_group("configuration (file < flags < --set)")
    g.add_argument("--config", metavar="YAML", help="configuration file (see configs/demo.yaml)")
    g.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override one config value, e.g. --set teacher.epochs=20 (repeatable)")
    g.add_argument("--dataset", help="dataset name (digits, mnist)")
    g.add_argument("--data-dir", help="folder with the dataset's files (mnist: IDX files)")
    g.add_argument("--seed", type=int, help="seed of every random source")
    g.add_argument("--timesteps", "-T", type=int, help="SNN input time steps")
    g.add_argument("--encoder", help="input encoder (rate, direct)")
    g.add_argument("--spec", help="SNN architecture spec (YAML)")
    g.add_argument("--teacher-model", help="teacher architecture (mlp, cnn, cnn_bn; cnn1d for I/Q frames)")
    p.add_argument("--out", required=True, metavar="DIR", help=out_help)
    p.add_argument("--force", action="store_true", help=FORCE_HELP)


def _progress_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _lava_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--samples", type=int, help="test samples to run through Lava")
    p.add_argument("--backend", choices=["auto", "sim", "loihi2"], default="auto",
                   help="auto: Loihi 2 if lava-loihi reports one, else the CPU simulator")
    p.add_argument("--data-dir", help="dataset folder, if not where the network was trained")
    p.add_argument("--metrics", metavar="JSON", help="also write the results to this JSON file")
    p.add_argument("--json", action="store_true",
                   help="print the results as one JSON object on stdout instead of a table")
    p.add_argument("--force", action="store_true",
                   help="replace --metrics if it is a metrics file neurokd wrote")


def _run_args(p: argparse.ArgumentParser, example: str) -> None:
    """--set, --out, --force and --no-progress of a command that writes one run directory."""
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help=f"override a config value, e.g. --set {example} (repeatable)")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory to create")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    _progress_args(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neurokd",
        description="Compress DNNs into quantized spiking networks for Loihi 2 and Lava.")
    parser.add_argument("--version", action="version", version=f"neurokd {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("demo", help="the whole flow: teacher, SNN, export, Lava, verify",
                       description="Train a DNN teacher and an SNN student, export the SNN to netx, "
                                   "run it in Lava and compare it spike for spike with PyTorch.")
    _config_args(p, "run directory to create")
    p.add_argument("--samples", type=int, help="test samples to run through Lava (lava.samples)")
    p.add_argument("--backend", choices=["auto", "sim", "loihi2"], help="Lava backend (lava.backend)")
    _progress_args(p)

    p = sub.add_parser("train-teacher", help="train a DNN teacher",
                       description="Train a teacher DNN; writes DIR/teacher.pt, config.yaml, metrics.json.")
    _config_args(p, "run directory to create")
    _progress_args(p)

    p = sub.add_parser("train-snn", help="train an SNN student directly",
                       description="Train an SNN of slayer CUBA blocks with surrogate gradients; "
                                   "writes DIR/snn.pt, config.yaml, metrics.json.")
    _config_args(p, "run directory to create")
    _progress_args(p)

    p = sub.add_parser("distill", help="train an SNN student from DNN teachers (co-learning, KD, ...)",
                       description="Train an SNN student with a DNN teacher: co-learning (both "
                                   "directions), classic KD, FitNet hints, relational KD, a teacher "
                                   "ensemble, or none. Writes DIR/snn.pt (and the co-learned "
                                   "teacher.pt), config.yaml, metrics.json.")
    p.add_argument("--teacher", metavar="CKPT", help="teacher checkpoint (teacher.pt)")
    p.add_argument("--student", metavar="SPEC", help="student architecture spec (YAML)")
    p.add_argument("--method", choices=["colearn", "kd", "fitnet", "relational", "ensemble", "none"],
                   help="distillation method (distill.method; default colearn)")
    _config_args(p, "run directory to create")
    _progress_args(p)

    p = sub.add_parser("export", help="export a trained SNN to a netx HDF5 network",
                       description="Export an SNN checkpoint to netx HDF5 (loadable by "
                                   "lava.lib.dl.netx.hdf5.Network).")
    p.add_argument("--snn", required=True, metavar="CKPT", help="SNN checkpoint (snn.pt)")
    p.add_argument("--out", required=True, metavar="FILE", help="network file to write (.net)")
    p.add_argument("--data-dir", help="dataset folder for the 24-bit overflow check")
    p.add_argument("--force", action="store_true",
                   help="replace --out if it is a network neurokd exported")

    p = sub.add_parser("quantize", help="quantization-aware training of an SNN for the chip",
                       description="Quantize a trained SNN to the integers of a Loihi profile: "
                                   "trainable quantizer scales, layers entering quantization by a "
                                   "probability schedule, distillation from the full-precision "
                                   "model. Writes snn.pt (verify it with 'neurokd verify') and "
                                   "network.net.")
    p.add_argument("--snn", required=True, metavar="CKPT", help="trained full-precision SNN (snn.pt)")
    p.add_argument("--hardware", help="target profile (loihi2, loihi1) or a profile YAML")
    p.add_argument("--bits", type=int, help="weight bits of every layer (default 8)")
    p.add_argument("--layer-bits", metavar="B,B,...", help="bits per spiking layer, e.g. 8,4")
    p.add_argument("--method", choices=["ptq", "fixed_qat", "lsq", "lsq_prob", "lsq_prob_kd"],
                   help="quantization method (default lsq_prob_kd)")
    p.add_argument("--kd-from", metavar="CKPT", help="full-precision supervisor: a teacher or SNN "
                                                      "checkpoint (default: the float SNN itself)")
    p.add_argument("--epochs", type=int, help="QAT epochs")
    p.add_argument("--data-dir", help="dataset folder, if not where the SNN was trained")
    _run_args(p, "quant.lr=1e-3")

    p = sub.add_parser("convert", help="convert a trained DNN into a quantized Loihi SNN",
                       description="Turn a DNN teacher (Linear, Conv2d, ReLU, Flatten, BatchNorm, "
                                   "AvgPool2d) into an integrate-and-fire SNN on the chip's "
                                   "integers for T time steps: BatchNorm folded, pooling as "
                                   "strided convolution, thresholds balanced on data; with "
                                   "--method qkd (default) after quantization through "
                                   "distillation. Writes snn.pt (verify it with 'neurokd verify'), "
                                   "network.net, metrics.json and a rate-tracking plot.")
    p.add_argument("--teacher", required=True, metavar="CKPT", help="trained DNN (teacher.pt)")
    p.add_argument("--timesteps", "-T", required=True, type=int, help="SNN input time steps")
    p.add_argument("--hardware", help="target profile (loihi2, loihi1) or a profile YAML")
    p.add_argument("--method", choices=["qkd", "plain"], help="qkd (default) or plain conversion")
    p.add_argument("--epochs", type=int, help="qkd fine-tuning epochs")
    p.add_argument("--data-dir", help="dataset folder, if not where the teacher was trained")
    _run_args(p, "convert.percentile=99.5")

    p = sub.add_parser("search", help="training-free search for an SNN that fits the chip",
                       description="Sample Loihi-compatible SNN architectures, reject those over "
                                   "the budget, score the rest at initialization with a proxy "
                                   "(no training), and write a ranked table, the Pareto front "
                                   "against cores and synaptic operations, and the chosen spec "
                                   "(spec.yaml, for --spec / --student).")
    p.add_argument("--dataset", help="dataset name (digits, mnist)")
    p.add_argument("--data-dir", help="folder with the dataset's files (mnist: IDX files)")
    p.add_argument("--hardware", help="target profile (loihi2, loihi1) or a profile YAML")
    p.add_argument("--max-cores", type=int, help="budget: estimated cores (default: one chip)")
    p.add_argument("--max-memory", type=int, metavar="BYTES", help="budget: synaptic memory")
    p.add_argument("--candidates", type=int, default=100, help="architectures to score")
    p.add_argument("--proxy", default="synops",
                   help="score to maximise (default synops: the best rank correlation with trained "
                        "accuracy measured, see benchmarks/results/nas_correlation.md)")
    p.add_argument("--strategy", choices=["evolution", "random"], default="evolution")
    p.add_argument("--space", metavar="YAML", help="search space (default: neurokd/nas/space.py)")
    p.add_argument("--workers", type=int, default=1, help="scoring processes")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="score on this running Ray cluster (host:port, or 'auto') instead of local "
                        "processes; needs the optional extra: pip install 'neurokd[ray]'")
    p.add_argument("--encoder", help="input encoder (rate, direct)")
    p.add_argument("--seed", type=int, help="seed of the sampling and the data batches")
    _run_args(p, "data.limit=500")

    p = sub.add_parser("run-lava", help="run an exported network in Lava and report accuracy",
                       description="Run a netx network on Loihi 2 or Lava's CPU simulator over "
                                   "test samples, one run with a reset between samples.")
    p.add_argument("--net", required=True, metavar="FILE", help="network file (.net)")
    _lava_args(p)
    _progress_args(p)

    p = sub.add_parser("verify", help="compare PyTorch and Lava output spikes step by step",
                       description="Run the same samples through the PyTorch SNN and Lava and "
                                   "compare output spikes bin by bin. Exits 1 on any mismatch.")
    p.add_argument("--snn", required=True, metavar="CKPT", help="SNN checkpoint (snn.pt)")
    p.add_argument("--net", metavar="FILE", help="its exported network; exported afresh if omitted")
    _lava_args(p)
    _progress_args(p)
    return parser


def _config(args: argparse.Namespace):
    from neurokd.config import build_config

    values: Dict[str, Any] = {
        "data.dataset": args.dataset, "data.data_dir": args.data_dir, "seed": args.seed,
        "student.timesteps": args.timesteps, "student.encoder": args.encoder,
        "student.spec": args.spec, "teacher.model": args.teacher_model,
        "lava.samples": getattr(args, "samples", None), "lava.backend": getattr(args, "backend", None),
        "distill.method": getattr(args, "method", None),
    }
    if getattr(args, "student", None) is not None:
        values["student.spec"] = args.student
    return build_config(args.config, args.set, values)


def _inputs(args: argparse.Namespace, cfg=None) -> List[Optional[str]]:
    """Every file or folder a command reads, so that no output can hold or replace one."""
    found: List[Optional[str]] = [getattr(args, name, None) for name in
                                  ("config", "spec", "student", "teacher", "snn", "kd_from", "net",
                                   "space", "data_dir")]
    if cfg is not None:
        found += [cfg.student.spec, cfg.data.data_dir, *cfg.distill.ensemble]
    return found


def _run_dir(args: argparse.Namespace, cfg=None):
    from neurokd.fileio import RunDir

    return RunDir(args.out, force=args.force, inputs=_inputs(args, cfg), command=args.command)


def _progress(args: argparse.Namespace) -> bool:
    return not args.no_progress and sys.stderr.isatty()


def _positive(name: str, value: Optional[int]) -> None:
    if value is not None and value <= 0:
        raise NeurokdError(f"{name} must be positive, got {value}")


def cmd_demo(args: argparse.Namespace) -> int:
    from neurokd.demo import run_demo

    _positive("--samples", args.samples)
    cfg = _config(args)
    run_demo(cfg, args.out, force=args.force, progress=_progress(args), inputs=_inputs(args, cfg))
    return 0


def _train(args: argparse.Namespace, which: str) -> int:
    from neurokd import pipeline
    from neurokd.config import config_to_dict
    from neurokd.fileio import write_json, write_yaml
    from neurokd.metrics import plots
    from neurokd.metrics.report import table

    cfg = _config(args)
    pipeline.check_config(cfg)
    with _run_dir(args, cfg) as run:
        write_yaml(run / "config.yaml", config_to_dict(cfg))
        ds = pipeline.load_data(cfg, print)
        if which == "distill":
            model, teacher, metrics = pipeline.train_distilled(cfg, ds, args.teacher, _progress(args), print)
            pipeline.save_snn(run / "snn.pt", model, cfg, ds)
            if "teacher_accuracy_after" in metrics:
                pipeline.save_teacher(run / "teacher.pt", teacher, cfg, ds)
            history = metrics.pop("snn_history")
        elif which == "teacher":
            model, metrics = pipeline.train_teacher(cfg, ds, _progress(args), print)
            pipeline.save_teacher(run / "teacher.pt", model, cfg, ds)
            history = metrics.pop("teacher_history")
        else:
            model, metrics = pipeline.train_snn(cfg, ds, _progress(args), print)
            pipeline.save_snn(run / "snn.pt", model, cfg, ds)
            history = metrics.pop("snn_history")
        plots.training_curves({which: history}, run / "training_curves.png")
        radio = None
        if pipeline.is_radio(ds):
            receivers = {}
            if which == "teacher" or (which == "distill" and teacher is not None):
                dnn = model if which == "teacher" else teacher
                receivers[f"DNN teacher ({cfg.teacher.model})"] = (dnn, {})
            if which != "teacher":
                receivers["SNN"] = (model, pipeline.snn_meta(cfg, ds))
            radio = pipeline.radio_report(ds, receivers, run, cfg.seed)
            metrics["radio"] = radio
        write_json(run / "metrics.json", metrics)
    print(table([(k, v) for k, v in metrics.items() if k != "radio"], title=f"{which}: {ds.name}"))
    _radio_lines(radio)
    print(f"run directory: {args.out}")
    return 0


def _radio_lines(report: Optional[Dict[str, Any]]) -> None:
    if report is not None:
        from neurokd.radio.report import summary_lines

        for line in summary_lines(report):
            print(line)


def _layer_bits(text: Optional[str]) -> Optional[List[int]]:
    if text is None:
        return None
    try:
        return [int(b) for b in text.split(",")]
    except ValueError:
        raise NeurokdError(f"--layer-bits {text!r}: expected integers separated by commas, e.g. 8,4") from None


def cmd_quantize(args: argparse.Namespace) -> int:
    from neurokd import pipeline
    from neurokd.config import build_config, config_to_dict
    from neurokd.fileio import write_json, write_yaml
    from neurokd.metrics import plots
    from neurokd.metrics.report import table

    _positive("--epochs", args.epochs)
    run_dir = _run_dir(args)  # checks --out before the checkpoint is even read
    model, meta = pipeline.load_snn(args.snn)
    base = config_to_dict(pipeline.config_from_meta(meta, args.data_dir, where=args.snn))
    base.pop("quant", None)
    values = {"hardware": args.hardware, "quant.bits": args.bits, "quant.method": args.method,
              "quant.epochs": args.epochs, "quant.layer_bits": _layer_bits(args.layer_bits)}
    cfg = build_config(None, args.set, values, base=base)
    pipeline.check_names(cfg)
    if args.kd_from is not None:
        pipeline.load_checkpoint(args.kd_from)  # a bad --kd-from fails before any work
    ds = pipeline.load_data(cfg)
    with run_dir as run:
        write_yaml(run / "config.yaml", config_to_dict(cfg))
        qmodel, metrics = pipeline.quantize(model, meta, cfg, ds, args.kd_from, _progress(args), print)
        new_meta = pipeline.snn_meta(cfg, ds)
        from neurokd.models.checkpoint import save_checkpoint

        save_checkpoint(run / "snn.pt", "snn", qmodel.arch(), qmodel.state_dict(), new_meta)
        pipeline.export_snn(qmodel, run / "network.net", new_meta, ds, log=print)
        if "qat_history" in metrics:
            plots.training_curves({"quantize": metrics.pop("qat_history")}, run / "training_curves.png")
        if pipeline.is_radio(ds):
            metrics["radio"] = pipeline.radio_report(
                ds, {"SNN, float": (model, meta),
                     f"SNN, {'/'.join(str(b) for b in qmodel.bits)} bits (PyTorch = Lava)": (qmodel, new_meta)},
                run, cfg.seed)
        write_json(run / "metrics.json", metrics)
    for name in ("test_overflow", "train_overflow"):
        for row in metrics.get(name, []):
            if row["overflow"]:
                print(f"warning: layer {row['layer']} passed the {qmodel.profile.state_bits}-bit "
                      f"state ({name.split('_')[0]}): |u| {row['max_abs_current']}, "
                      f"|v| {row['max_abs_voltage']}, {row['current_wraps']} current wraps, "
                      f"{row['voltage_clips']} voltage clips; Lava does the same")
    shown = [(k, v) for k, v in metrics.items()
             if k not in ("layers", "test_overflow", "train_overflow", "radio")]
    print(table(shown, title=f"quantize: {args.snn} → {cfg.hardware}"))
    _radio_lines(metrics.get("radio"))
    print(f"run directory: {args.out} (check it with: neurokd verify --snn {args.out}/snn.pt "
          f"--net {args.out}/network.net)")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from neurokd import pipeline
    from neurokd.config import build_config, config_to_dict
    from neurokd.fileio import write_json, write_yaml
    from neurokd.metrics import plots
    from neurokd.metrics.report import table
    from neurokd.models.checkpoint import load_checkpoint, save_checkpoint

    _positive("--timesteps", args.timesteps)
    _positive("--epochs", args.epochs)
    run_dir = _run_dir(args)
    payload = load_checkpoint(args.teacher, "teacher")
    meta = payload.get("meta") or {}
    base = config_to_dict(pipeline.config_from_meta(meta, args.data_dir, where=args.teacher))
    base.pop("convert", None)
    values = {"hardware": args.hardware, "student.timesteps": args.timesteps,
              "student.encoder": "direct", "convert.method": args.method,
              "convert.epochs": args.epochs}
    cfg = build_config(None, args.set, values, base=base)
    pipeline.check_names(cfg)
    ds = pipeline.load_data(cfg)
    with run_dir as run:
        write_yaml(run / "config.yaml", config_to_dict(cfg))
        snn, metrics = pipeline.convert(cfg, ds, args.teacher, _progress(args), print)
        pairs = metrics.pop("_rate_pairs")
        snn_meta = pipeline.snn_meta(cfg, ds)
        save_checkpoint(run / "snn.pt", "snn", snn.arch(), snn.state_dict(), snn_meta)
        pipeline.export_snn(snn, run / "network.net", snn_meta, ds, log=print)
        plots.rate_scatter(pairs, run / "rate_tracking.png",
                           names=[f"{row['kind']} {i}" for i, row in enumerate(metrics["layers"])])
        if "qkd_history" in metrics:
            plots.training_curves({"qkd": metrics.pop("qkd_history")}, run / "training_curves.png")
        if pipeline.is_radio(ds):
            metrics["radio"] = pipeline.radio_report(
                ds, {f"DNN teacher ({cfg.teacher.model})": (pipeline.load_teacher(args.teacher), {}),
                     f"converted SNN, T = {args.timesteps} (PyTorch = Lava)": (snn, snn_meta)},
                run, cfg.seed)
        write_json(run / "metrics.json", metrics)
    shown = [(k, v) for k, v in metrics.items() if k not in ("layers", "converted_layers", "radio")]
    shown += [(f"layer {i} ({row['kind']}) rate corr.", row["correlation"])
              for i, row in enumerate(metrics["layers"])]
    print(table(shown, title=f"convert: {args.teacher} → {cfg.hardware}, T = {args.timesteps}"))
    _radio_lines(metrics.get("radio"))
    print(f"run directory: {args.out} (check it with: neurokd verify --snn {args.out}/snn.pt "
          f"--net {args.out}/network.net)")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    import csv

    from neurokd import pipeline
    from neurokd.config import build_config, config_to_dict
    from neurokd.fileio import atomic_path, write_json, write_yaml
    from neurokd.hardware import load_profile
    from neurokd.metrics import plots
    from neurokd.metrics.report import table
    from neurokd.nas.resources import Budget
    from neurokd.nas.search import run_search
    from neurokd.nas.space import describe, load_space

    for name in ("--candidates", "--workers", "--max-cores", "--max-memory"):
        _positive(name, getattr(args, name[2:].replace("-", "_")))
    cfg = build_config(None, args.set, {"data.dataset": args.dataset, "data.data_dir": args.data_dir,
                                        "hardware": args.hardware, "seed": args.seed,
                                        "student.encoder": args.encoder})
    space = load_space(args.space)
    profile = load_profile(cfg.hardware)
    from neurokd.nas.proxies import PROXIES

    PROXIES.get(args.proxy)
    run_dir = _run_dir(args, cfg)
    ds = pipeline.load_data(cfg, log=print)
    budget = Budget(args.max_cores, args.max_memory)
    with run_dir as run:
        write_yaml(run / "config.yaml", config_to_dict(cfg))
        res = run_search(ds, space, profile, budget, args.proxy, args.strategy, args.candidates,
                         args.workers, cfg.student.encoder, seed=cfg.seed, progress=_progress(args),
                         ray_address=args.ray)
        rows = [dict(rank=i + 1, **c.row(args.proxy)) for i, c in enumerate(res["ranked"])]
        with atomic_path(run / "ranked.csv") as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        chosen = res["chosen"]
        write_yaml(run / "spec.yaml", chosen.spec.model_dump())
        front = res["front"]
        plots.pareto([(c.resources["cores"], c.scores["synops"], c.scores[args.proxy])
                      for c in res["ranked"]],
                     [(c.resources["cores"], c.scores["synops"], c.scores[args.proxy]) for c in front],
                     run / "pareto.png", args.proxy)
        summary = {"proxy": args.proxy, "strategy": args.strategy, "candidates": len(rows),
                   "scored_on": f"ray:{args.ray}" if args.ray else f"{args.workers} processes",
                   "timesteps": space.timesteps, "hardware": profile.name,
                   "budget": {"max_cores": args.max_cores, "max_memory_bytes": args.max_memory},
                   "seconds": res["seconds"], "archs_per_second": res["archs_per_second"],
                   "chosen": rows[0], "chosen_spec": chosen.spec.model_dump(),
                   "pareto_front": [c.row(args.proxy) for c in front], "space": space.model_dump()}
        write_json(run / "search.json", summary)
    print(table([(str(r["rank"]), f"{r['arch']}  score {r['score']:.4g}, {r['cores']} cores, "
                 f"{r['synapses']} synapses") for r in rows[:10]],
                title=f"search: {ds.name}, proxy {args.proxy}, {len(rows)} candidates "
                      f"({res['archs_per_second']:.1f}/s)"))
    print(f"chosen: {describe(chosen.spec)} → {args.out}/spec.yaml; train it with: neurokd demo "
          f"--spec {args.out}/spec.yaml -T {space.timesteps} --out runs/searched")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from neurokd import pipeline
    from neurokd.deploy.export import is_neurokd_network
    from neurokd.fileio import check_output_file

    check_output_file(args.out, _inputs(args), args.force, ours=is_neurokd_network)
    model, meta = pipeline.load_snn(args.snn)
    cfg = pipeline.config_from_meta(meta, args.data_dir, where=args.snn)
    try:
        ds = pipeline.load_data(cfg)
    except NeurokdError as exc:
        ds = None
        print(f"note: 24-bit overflow check skipped, no data ({exc})")
    path = pipeline.export_snn(model, args.out, meta, ds, log=print, replace=args.force)
    print(f"exported {args.snn} → {path} (netx HDF5, {model.window_pad} trailing zero frames "
          f"per sample, window {meta['timesteps'] + model.window_pad} steps)")
    return 0


def _is_metrics_file(path: Path) -> bool:
    """A metrics JSON that run-lava or verify wrote (they mark it with a ``neurokd`` key)."""
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "neurokd" in data


def _check_metrics_out(args: argparse.Namespace) -> None:
    if args.metrics is not None:
        from neurokd.fileio import check_output_file

        check_output_file(args.metrics, _inputs(args), args.force, ours=_is_metrics_file,
                          flag="--metrics")


def _report(args: argparse.Namespace, title: str, shown: Dict[str, Any], full: Dict[str, Any]) -> None:
    """Print the results (a table, or JSON with --json) and write --metrics if asked."""
    import json

    from neurokd import __version__
    from neurokd.metrics.report import table

    if args.json:
        print(json.dumps({k: v for k, v in full.items() if not k.startswith("_")}, sort_keys=True))
    else:
        print(table(shown.items(), title=title))
    if args.metrics:
        from neurokd.fileio import write_json

        record = {k: v for k, v in full.items() if not k.startswith("_")}
        record["neurokd"] = {"version": __version__, "command": args.command}
        write_json(args.metrics, record, replace=args.force)


def _lava_data(meta: Dict[str, Any], data_dir: Optional[str], where: str):
    from neurokd import pipeline

    cfg = pipeline.config_from_meta(meta, data_dir, where=where)
    return cfg, pipeline.load_data(cfg)


def cmd_run_lava(args: argparse.Namespace) -> int:
    from neurokd import pipeline
    from neurokd.deploy.export import read_meta
    from neurokd.deploy.lava_run import resolve_backend

    _positive("--samples", args.samples)
    _check_metrics_out(args)
    resolve_backend(args.backend)
    meta = read_meta(args.net)
    cfg, ds = _lava_data(meta, args.data_dir, args.net)
    samples = args.samples or cfg.lava.samples
    res = pipeline.run_on_lava(args.net, ds, meta, samples, args.backend, seed=cfg.seed,
                               progress=_progress(args))
    shown = {k: v for k, v in res.items() if not k.startswith("_")}
    _report(args, f"run-lava: {args.net}", shown, shown)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from neurokd import pipeline
    from neurokd.deploy.export import read_meta
    from neurokd.deploy.lava_run import resolve_backend

    _positive("--samples", args.samples)
    _check_metrics_out(args)
    resolve_backend(args.backend)
    model, meta = pipeline.load_snn(args.snn)
    if args.net is not None:
        read_meta(args.net)  # a bad --net fails before the data is loaded
    cfg, ds = _lava_data(meta, args.data_dir, args.snn)
    samples = args.samples or cfg.lava.samples
    with tempfile.TemporaryDirectory(prefix="neurokd-verify-") as tmp:
        net = Path(args.net) if args.net else pipeline.export_snn(model, Path(tmp) / "network.net", meta)
        res = pipeline.verify(model, net, ds, read_meta(net), samples, args.backend, seed=cfg.seed,
                              progress=_progress(args))
    shown = {k: v for k, v in res.items() if not k.startswith("_") and k != "state_extremes"}
    _report(args, f"verify: {args.snn}", shown, res)
    if res["lava_spike_match"] < 1.0:
        print(f"neurokd: verify: {1 - res['lava_spike_match']:.4%} of output spike bins differ "
              f"between PyTorch and Lava ({res['lava_samples_exact']}/{res['lava_samples']} "
              f"samples exact)", file=sys.stderr)
        return EXIT_MISMATCH
    return 0


COMMANDS = {"demo": cmd_demo, "train-teacher": lambda a: _train(a, "teacher"),
            "train-snn": lambda a: _train(a, "snn"), "distill": lambda a: _train(a, "distill"),
            "export": cmd_export, "quantize": cmd_quantize, "convert": cmd_convert,
            "search": cmd_search,
            "run-lava": cmd_run_lava, "verify": cmd_verify}


def _run_command(args: argparse.Namespace) -> int:
    try:
        return COMMANDS[args.command](args)
    except NeurokdError as exc:
        if args.debug:
            raise
        print(f"neurokd: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:  # an unexpected failure: one line unless --debug
        from neurokd.interrupts import interrupted

        if interrupted():  # a failure the signal caused: report the interruption, not an error
            raise KeyboardInterrupt from None
        if args.debug:
            raise
        print(f"neurokd: internal error: {type(exc).__name__}: {exc} (rerun with --debug for "
              "the traceback)", file=sys.stderr)
        return 1


def main(argv: Optional[List[str]] = None) -> int:
    """Run one command. SIGINT, SIGTERM and SIGHUP (to the process or its group) unwind it like an
    error: run directories and files being written are removed, child processes (Lava's runtime,
    search workers) are stopped, and the exit status is 128 + the signal number (130 for Ctrl-C,
    143 for SIGTERM), with one line on stderr. See ``neurokd.interrupts``."""
    import signal

    from neurokd.interrupts import kill_descendants, signals_to_exceptions

    with signals_to_exceptions() as state:
        try:
            args = build_parser().parse_args(argv)
            code: Optional[int] = _run_command(args)
            state.hold()  # the run is over: a signal from here on is only recorded
        except KeyboardInterrupt:
            state.hold()
            code = None
        if code is None or state.signum is not None:
            kill_descendants(state.keep)  # whatever a bounded stop left behind
            signum = state.signum or signal.SIGINT
            print(f"neurokd: interrupted ({signal.Signals(signum).name}); nothing half-written "
                  "was kept", file=sys.stderr)
            return 128 + signum
        return code


if __name__ == "__main__":
    raise SystemExit(main())
