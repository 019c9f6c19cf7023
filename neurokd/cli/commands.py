"""The commands: each parses its options into a configuration, calls one recipe of
``neurokd.runs`` (or a stage of ``neurokd.pipeline``) and prints what it measured."""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

from neurokd import __version__
from neurokd.errors import NeurokdError

from neurokd.cli.parser import TRAIN_TOP_EPOCHS

EXIT_USER_ERROR = 2
EXIT_MISMATCH = 1

FLAG_KEYS = {"dataset": "data.dataset", "data_dir": "data.data_dir", "seed": "seed",
             "timesteps": "student.timesteps", "encoder": "student.encoder", "spec": "student.spec",
             "teacher_model": "teacher.model", "teacher_epochs": "teacher.epochs",
             "samples": "lava.samples", "backend": "lava.backend", "method": "distill.method",
             "device": "device", "neuron": "student.neuron", "sparsity": "convert.sparsity",
             "target_rate": "convert.target_rate"}


def _teacher_ref(args: argparse.Namespace):
    """The --teacher options as a ``TeacherRef`` (None without --teacher), checked to go together."""
    import os

    from neurokd.interop.teachers import parse_kwargs, teacher_ref

    if args.teacher is None:
        if args.teacher_weights is not None or args.teacher_kwargs is not None:
            raise NeurokdError("--teacher-weights and --teacher-kwargs go with --teacher")
        return None
    return teacher_ref(args.teacher, args.teacher_weights, parse_kwargs(args.teacher_kwargs),
                       search_path=os.getcwd())


def _config(args: argparse.Namespace):
    from neurokd.config import build_config

    values: Dict[str, Any] = {key: getattr(args, flag, None) for flag, key in FLAG_KEYS.items()}
    if getattr(args, "epochs", None) is not None:
        # demo, train-snn and distill: the SNN's epochs; train-teacher: the teacher's
        values["teacher.epochs" if args.command == "train-teacher" else "student.epochs"] = args.epochs
    return build_config(args.config, args.set, values, log=print)


def _inputs(args: argparse.Namespace, cfg=None) -> List[Optional[str]]:
    """Every file or folder a command reads, so that no output can hold or replace one."""
    found: List[Optional[str]] = [getattr(args, name, None) for name in
                                  ("config", "spec", "student", "teacher", "teacher_weights", "snn",
                                   "kd_from", "kd_from_weights", "net", "space", "data_dir", "graph")]
    if cfg is not None:
        found += [cfg.student.spec, cfg.data.data_dir, *cfg.distill.ensemble]
    return found


def _run_dir(args: argparse.Namespace, cfg=None):
    from neurokd.runs import run_dir

    return run_dir(args.out, args.command, args.force, _inputs(args, cfg))


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars only where a person watches both streams; otherwise (output to a file or a
    pipe, or --no-progress) training prints one line per epoch to stdout instead."""
    return not args.no_progress and sys.stderr.isatty() and sys.stdout.isatty()


def _positive(name: str, value: Optional[int]) -> None:
    if value is not None and value <= 0:
        raise NeurokdError(f"{name} must be positive, got {value}")


def cmd_demo(args: argparse.Namespace) -> int:
    from neurokd import runs

    for name in ("--samples", "--epochs", "--teacher-epochs"):
        _positive(name, getattr(args, name[2:].replace("-", "_")))
    cfg = _config(args)
    runs.demo(cfg, args.out, force=args.force, progress=_progress(args), inputs=_inputs(args, cfg),
              ignore_fit=args.ignore_fit)
    return 0


def _train(args: argparse.Namespace, which: str) -> int:
    from neurokd import runs
    from neurokd.metrics.report import table

    _positive("--epochs", args.epochs)
    cfg = _config(args)
    teacher = _teacher_ref(args) if which == "distill" else None
    metrics, ds = runs.train(cfg, which, args.out, teacher, force=args.force,
                             inputs=_inputs(args, cfg), progress=_progress(args), log=print)
    print(table([(k, v) for k, v in metrics.items()
                 if k not in ("radio", "layers", "synops_layers", *runs.SOURCE_KEYS)],
                title=f"{which}: {ds.name}"))
    runs.radio_lines(metrics.get("radio"), print)
    print(f"run directory: {args.out}")
    return 0


def _layer_bits(text: Optional[str]) -> Optional[List[int]]:
    if text is None:
        return None
    try:
        return [int(b) for b in text.split(",")]
    except ValueError:
        raise NeurokdError(f"--layer-bits {text!r}: expected integers separated by commas, e.g. 8,4") from None


def _fit_cost(rows) -> str:
    return ", ".join(f"layer {r['layer']} step ×{r['step_factor']:.2f} (|m| up to "
                     f"{r['levels_before']} → {r['levels_after']}, {math.log2(r['step_factor']):.1f} "
                     "bits of weight precision)" for r in rows if r["step_factor"] > 1)


def _state_fit_lines(metrics, q, state_bits: int) -> List[str]:
    """What ``quant.fit_state`` did, or what it would cost where the state passed the chip's bits."""
    if metrics.get("state_fit"):
        cost = _fit_cost(metrics["state_fit"])
        return [f"state fit (quant.fit_state={q.fit_state}): "
                f"{cost or 'no layer needed it'}; states kept within {q.state_target:g} of the "
                f"{state_bits}-bit limit" + (" on the training samples measured"
                                             if q.fit_state == "measured" else " for every input")]
    option = metrics.get("state_fit_option")
    if not option:
        return []
    clips = sum(r["current_wraps"] + r["voltage_clips"] for r in option["test_overflow"])
    return [f"remedy: --fit-state measured (quant.fit_state) keeps the state inside "
            f"{state_bits} bits by coarsening the weight steps: {_fit_cost(option['layers'])}; "
            f"test accuracy {metrics['quant_accuracy']:.4f} → {option['quant_accuracy']:.4f}, "
            f"wraps and clips on the first test batch {clips} after it (--fit-state bound: "
            "for every input, at a larger cost)"]


def cmd_quantize(args: argparse.Namespace) -> int:
    from neurokd import pipeline, runs
    from neurokd.config import build_config, config_to_dict
    from neurokd.metrics.report import table

    _positive("--epochs", args.epochs)
    run_dir = _run_dir(args)  # checks --out before the checkpoint is even read
    model, meta = pipeline.load_snn(args.snn)
    base = config_to_dict(pipeline.config_from_meta(meta, args.data_dir, where=args.snn))
    base.pop("quant", None)
    values = {"hardware": args.hardware, "quant.bits": args.bits, "quant.method": args.method,
              "quant.epochs": args.epochs, "quant.layer_bits": _layer_bits(args.layer_bits),
              "quant.fit_state": args.fit_state, "device": args.device}
    cfg = build_config(None, args.set, values, base=base)
    kd_from = None
    if args.kd_from is not None:
        import os

        from neurokd.interop.teachers import parse_kwargs, teacher_ref

        kd_from = teacher_ref(args.kd_from, args.kd_from_weights, parse_kwargs(args.kd_from_kwargs),
                              search_path=os.getcwd())
    elif args.kd_from_weights is not None or args.kd_from_kwargs is not None:
        raise NeurokdError("--kd-from-weights and --kd-from-kwargs go with --kd-from")
    metrics, qmodel, _ = runs.quantize(model, meta, cfg, run_dir, kd_from,
                                       progress=_progress(args), log=print,
                                       ignore_fit=args.ignore_fit)
    for name in ("test_overflow", "train_overflow"):
        for row in metrics.get(name, []):
            if row["overflow"]:
                print(f"warning: layer {row['layer']} passed the {qmodel.profile.state_bits}-bit "
                      f"state ({name.split('_')[0]}): |u| {row['max_abs_current']}, "
                      f"|v| {row['max_abs_voltage']}, {row['current_wraps']} current wraps, "
                      f"{row['voltage_clips']} voltage clips; Lava does the same")
    for line in _state_fit_lines(metrics, cfg.quant, qmodel.profile.state_bits):
        print(line)
    shown = [(k, v) for k, v in metrics.items()
             if k not in ("layers", "test_overflow", "train_overflow", "radio", "state_fit",
                          "state_fit_option")]
    print(table(shown, title=f"quantize: {args.snn} → {cfg.hardware}"))
    print("float_snn_accuracy is the checkpoint as train-snn evaluated it (same test split and "
          "encoding); float_unrounded_accuracy: its weights without slayer's 8-bit rounding, in "
          "float arithmetic (the lsq_prob_kd reference)")
    runs.radio_lines(metrics.get("radio"), print)
    print(f"run directory: {args.out} (check it with: neurokd verify --snn {args.out}/snn.pt "
          f"--net {args.out}/network.net)")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from neurokd import pipeline, runs
    from neurokd.config import build_config, config_to_dict
    from neurokd.metrics.report import table
    from neurokd.models.checkpoint import load_checkpoint
    from neurokd.data.encoders import get_encoder

    _positive("--timesteps", args.timesteps)
    _positive("--epochs", args.epochs)
    # with no time window given, the network that needs none: sigma-delta, which converts a DNN
    # almost losslessly (benchmarks/results/sdnn.md)
    if args.neuron is None:
        args.neuron = "cuba" if args.timesteps is not None else "sdnn"
    if args.timesteps is None and args.neuron != "sdnn":
        raise NeurokdError("convert: --neuron cuba needs --timesteps")
    if args.neuron != "sdnn" and any(v is not None for v in (args.delta_threshold, args.sparsity,
                                                             args.target_rate)):
        raise NeurokdError("convert: --delta-threshold, --sparsity and --target-rate go with "
                           "--neuron sdnn")
    ref = _teacher_ref(args)
    run_dir = _run_dir(args)
    base: Dict[str, Any] = {}  # a DNN from elsewhere: the defaults and the --dataset's presets
    if ref.kind == "checkpoint":  # a neurokd teacher: its run's configuration
        payload = load_checkpoint(args.teacher, "teacher")
        meta = payload.get("meta") or {}
        base = config_to_dict(pipeline.config_from_meta(meta, args.data_dir, where=args.teacher))
        base.pop("convert", None)
    # graded input: the teacher run's when it was graded (a teacher trained on signed I/Q reads
    # the signed layout), else 4-bit direct
    encoder = args.encoder or base.get("student", {}).get("encoder", "direct")
    if args.encoder is None and not get_encoder(encoder).message_bits:
        encoder = "direct"
    method = args.method
    if args.neuron == "sdnn":
        if args.encoder is None and not get_encoder(encoder).signed:
            encoder = "direct8"  # a sigma-delta network reads its input at 8 bits
        if method is None:  # converting is nearly lossless: fine-tune only to trade for sparsity
            method = "qkd" if args.sparsity or args.target_rate else "plain"
    values = {"hardware": args.hardware, "student.timesteps": args.timesteps,
              "student.encoder": encoder, "convert.method": method,
              "convert.neuron": args.neuron, "convert.delta_threshold": args.delta_threshold,
              "convert.sparsity": args.sparsity, "convert.target_rate": args.target_rate,
              "convert.epochs": args.epochs, "data.dataset": args.dataset,
              "data.data_dir": args.data_dir, "device": args.device}
    cfg = build_config(None, args.set, values, base=base)
    metrics, _ = runs.convert(cfg, ref, run_dir, progress=_progress(args), log=print,
                              ignore_fit=args.ignore_fit)
    shown = [(k, v) for k, v in metrics.items()
             if k not in ("layers", "converted_layers", "radio", "synops_layers", *runs.SOURCE_KEYS)]
    if cfg.convert.neuron == "sdnn":
        title = f"convert: {args.teacher} → {cfg.hardware}, sigma-delta"
    else:
        shown += [(f"layer {i} ({row['kind']}) rate corr.", row["correlation"])
                  for i, row in enumerate(metrics["layers"])]
        title = f"convert: {args.teacher} → {cfg.hardware}, T = {args.timesteps}"
    print(table(shown, title=title))
    runs.radio_lines(metrics.get("radio"), print)
    print(f"run directory: {args.out} (check it with: neurokd verify --snn {args.out}/snn.pt "
          f"--net {args.out}/network.net)")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from neurokd import runs
    from neurokd.config import build_config
    from neurokd.metrics.report import table
    from neurokd.metrics.resources import Budget
    from neurokd.nas.space import describe, load_space

    for name in ("--candidates", "--workers", "--max-cores", "--max-memory", "--max-synops", "--max-energy",
                 "--probe-tau-grad", "--train-top", "--train-epochs"):
        _positive(name, getattr(args, name[2:].replace("-", "_")))
    if args.train_epochs is not None and args.train_top is None:
        raise NeurokdError("--train-epochs goes with --train-top")
    if args.train_top is not None and args.train_top > args.candidates:
        raise NeurokdError(f"--train-top {args.train_top} is more than the {args.candidates} "
                           "candidates the search scores (--candidates)")
    epochs = args.train_epochs or TRAIN_TOP_EPOCHS
    space = load_space(args.space)
    if args.neuron is not None:
        space = space.model_copy(update={"neuron": args.neuron})
    encoder = args.encoder
    if space.neuron == "sdnn" and encoder is None:  # a sigma-delta network reads graded input
        from neurokd.data.radioml import GENERATED, RADIOML

        encoder = "signed8" if args.dataset in (*GENERATED, *RADIOML) else "direct8"
    cfg = build_config(None, args.set, {"data.dataset": args.dataset, "data.data_dir": args.data_dir,
                                        "hardware": args.hardware, "seed": args.seed,
                                        "student.encoder": encoder, "device": args.device})
    res = runs.search(cfg, space, Budget(args.max_cores, args.max_memory, args.max_synops, args.max_energy),
                      _run_dir(args, cfg), proxy=args.proxy, strategy=args.strategy,
                      candidates=args.candidates, workers=args.workers, ray_address=args.ray,
                      all_proxies=args.all_proxies, tau_grad=args.probe_tau_grad,
                      train_top=args.train_top, train_epochs=epochs, progress=_progress(args),
                      device=args.device,
                      log=print)
    rows, trained, chosen, ds = res.rows, res.trained, res.chosen, res.ds
    print(table([(str(r["rank"]), f"{r['arch']}  score {r['score']:.4g}, {r['cores']} cores, "
                 f"{r['synapses']} synapses") for r in rows[:10]],
                title=f"search: {ds.name}, proxy {args.proxy}, {len(rows)} candidates "
                      f"({res.seconds_per_arch:.1f}/s)"))
    if trained is not None:
        print(table([(str(t["rank"]), f"{t['arch']}  val {t['val_accuracy']:.3f}, test "
                      f"{t['test_accuracy']:.3f}, {t['cores']} cores, {t['synops_trained']:.3g} "
                      f"synops trained, {t['train_seconds']:.0f} s") for t in trained],
                    title=f"trained (at most {epochs} epochs each), chosen by validation accuracy"))
    if space.neuron == "sdnn":
        print(f"chosen: {describe(chosen.spec)}, sigma-delta → {args.out}/spec.yaml (encoder "
              f"{cfg.student.encoder}, recorded in the spec); train it with: neurokd train-snn "
              f"--spec {args.out}/spec.yaml --out runs/searched")
    else:
        print(f"chosen: {describe(chosen.spec)} → {args.out}/spec.yaml (T = {space.timesteps}, "
              f"encoder {cfg.student.encoder}, recorded in the spec); train it with: neurokd demo "
              f"--spec {args.out}/spec.yaml --out runs/searched")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from neurokd import runs

    if args.format == "nir":
        _positive_dt(args.dt)
    path, summary = runs.export(args.snn, args.out, args.format, force=args.force,
                                inputs=_inputs(args), log=print, data_dir=args.data_dir,
                                check_fit=not args.ignore_fit, dt=args.dt)
    print(f"exported {args.snn} → {path} ({summary})")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from neurokd import runs
    from neurokd.metrics import energy

    _positive("--samples", args.samples)
    if args.device is not None:
        from neurokd.runtime import resolve_device

        resolve_device(args.device)  # a device that is not there fails before any file is read
    run_dir = _run_dir(args) if args.out is not None else None  # --out is checked before any work
    report, written = runs.report(args.snn, _teacher_ref(args), run_dir, data_dir=args.data_dir,
                                  samples=args.samples, version=__version__, device=args.device)
    print(energy.report_markdown(report), end="")
    if args.out is not None:
        print(f"run directory: {args.out} ({', '.join(written)})")
    return 0


def _positive_dt(dt: float) -> None:
    from neurokd.interop.nir import DT_RANGE

    if not (math.isfinite(dt) and DT_RANGE[0] <= dt <= DT_RANGE[1]):
        raise NeurokdError(f"--dt must be a number of seconds from {DT_RANGE[0]:g} to "
                           f"{DT_RANGE[1]:g}, got {dt:g}")


def cmd_import(args: argparse.Namespace) -> int:
    from neurokd import runs
    from neurokd.config import build_config
    from neurokd.metrics.report import table

    _positive("--timesteps", args.timesteps)
    _positive_dt(args.dt)
    cfg = build_config(args.config, args.set, {
        "data.dataset": args.dataset, "data.data_dir": args.data_dir, "seed": args.seed,
        "student.timesteps": args.timesteps, "student.encoder": args.encoder,
        "hardware": args.hardware}, log=print)
    snntorch = None
    if (args.graph is None) == (args.snntorch is None):
        raise NeurokdError("import: give a NIR graph file or --snntorch MODULE:FACTORY, one of them")
    if args.snntorch is not None:
        import os

        from neurokd.interop.teachers import parse_kwargs, teacher_ref

        if args.weights is None:
            raise NeurokdError("import --snntorch needs the model's trained weights (--weights "
                               "FILE, a state_dict saved with torch.save)")
        snntorch = teacher_ref(args.snntorch, args.weights, parse_kwargs(args.kwargs),
                               search_path=os.getcwd())
    elif args.weights is not None or args.kwargs is not None:
        raise NeurokdError("--weights and --kwargs go with --snntorch")
    metrics, ds = runs.import_graph(cfg, args.graph, args.out, args.dt, force=args.force,
                                    inputs=_inputs(args, cfg) + [args.weights], log=print,
                                    snntorch=snntorch)
    shown = [(k, v) for k, v in metrics.items()
             if k not in ("layers", "approximations", "nir_nodes", "source")]
    print(table(shown, title=f"import: {args.graph or args.snntorch} → {ds.name}, "
                             f"T = {cfg.student.timesteps}"))
    print(f"{len(metrics['approximations'])} approximations (listed above and in "
          f"{args.out}/metrics.json); nir_reference_accuracy is the graph as written (float64 "
          "Euler steps, biases included), snn_accuracy the imported float network")
    print(f"run directory: {args.out} (quantize it with: neurokd quantize --snn {args.out}/snn.pt "
          f"--method ptq --out RUN)")
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
        net = Path(args.net) if args.net else pipeline.export_snn(model, Path(tmp) / "network.net", meta,
                                                                  check_fit=False)
        res = pipeline.verify(model, net, ds, read_meta(net), samples, args.backend, seed=cfg.seed,
                              progress=_progress(args))
    shown = {k: v for k, v in res.items() if not k.startswith("_") and k != "state_extremes"}
    _report(args, f"verify: {args.snn}", shown, res)
    if res.get("lava_payload_match", 1.0) < 1.0:
        print(f"neurokd: verify: {1 - res['lava_payload_match']:.4%} of output payloads differ "
              f"between PyTorch and Lava ({res['lava_samples_exact']}/{res['lava_samples']} "
              f"samples exact)", file=sys.stderr)
        return EXIT_MISMATCH
    if res["lava_spike_match"] < 1.0:
        print(f"neurokd: verify: {1 - res['lava_spike_match']:.4%} of output spike bins differ "
              f"between PyTorch and Lava ({res['lava_samples_exact']}/{res['lava_samples']} "
              f"samples exact)", file=sys.stderr)
        return EXIT_MISMATCH
    return 0


COMMANDS = {"demo": cmd_demo, "train-teacher": lambda a: _train(a, "teacher"),
            "train-snn": lambda a: _train(a, "snn"), "distill": lambda a: _train(a, "distill"),
            "export": cmd_export, "import": cmd_import, "quantize": cmd_quantize,
            "convert": cmd_convert,
            "search": cmd_search, "report": cmd_report,
            "run-lava": cmd_run_lava, "verify": cmd_verify}


