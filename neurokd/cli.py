"""``neurokd``: one entry point; subcommands mirror the stages of the flow.

The CLI only parses arguments and calls library functions (``neurokd.runs``, ``neurokd.pipeline``)
that notebooks call too. A NeurokdError becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from neurokd import __version__
from neurokd.errors import NeurokdError

EXIT_USER_ERROR = 2
EXIT_MISMATCH = 1
FORCE_HELP = ("replace --out if it is a previous neurokd run directory (nothing else is ever "
              "replaced)")


IGNORE_FIT_HELP = ("export a network even if it does not fit one chip of its hardware profile "
                   "(more cores than cores_per_chip, a neuron reading more inputs than a core's "
                   "input axons, or more synaptic memory than a core holds); without it such a "
                   "network is refused, with the layer and the limit it breaks")


DATASET_HELP = ("dataset: digits (scikit-learn's 8x8 digits, bundled), mnist (IDX files in "
                "--data-dir), sensing, modulation, symbols (generated radio data, with their own "
                "default T, epochs and Lava samples); default digits")
DATA_DIR_HELP = ("folder with the dataset's files; mnist: the IDX files (train-images-idx3-ubyte, "
                 "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, raw or "
                 ".gz)")


def _defaults():
    from neurokd.config import RunConfig

    return RunConfig()


def _choices(section: str, field: str) -> List[str]:
    """The values a configuration field accepts (its ``Literal``), so that a flag offers exactly
    what the configuration takes, never a copy of it."""
    from typing import get_args

    from neurokd.config import RunConfig

    model = RunConfig.model_fields[section].annotation
    return list(get_args(model.model_fields[field].annotation))


def _config_args(p: argparse.ArgumentParser, out_help: str, *, teacher: bool, student: bool,
                 epochs: Optional[str] = None) -> None:
    """The configuration options of a training command: --config, --set and the shortcuts of the
    stages it runs (``teacher``: the DNN teacher's model; ``student``: the SNN's window, encoder and
    spec); ``epochs`` names the section whose epoch count --epochs sets."""
    d = _defaults()
    g = p.add_argument_group("configuration (defaults < --config file < --set < these flags)")
    g.add_argument("--config", metavar="YAML",
                   help="configuration file (configs/demo.yaml lists every key and its default)")
    g.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override one config value, e.g. --set student.lr=1e-3 (repeatable)")
    g.add_argument("--dataset", help=DATASET_HELP)
    g.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    g.add_argument("--seed", type=int, help=f"seed of every random source (default {d.seed})")
    if epochs is not None:
        g.add_argument("--epochs", type=int, metavar="N",
                       help=f"training epochs of the {'SNN' if epochs == 'student' else 'teacher'} "
                            f"({epochs}.epochs, default {getattr(d, epochs).epochs}; early stopping "
                            f"after {epochs}.patience = {getattr(d, epochs).patience} epochs without "
                            "a better validation accuracy may end it sooner)")
    if teacher:
        g.add_argument("--teacher-model", metavar="MODEL",
                       help=f"teacher architecture: mlp, cnn, cnn_bn, cnn1d (I/Q frames); default "
                            f"{d.teacher.model}")
    if student:
        g.add_argument("--timesteps", "-T", type=int, metavar="T",
                       help=f"SNN input time steps (default {d.student.timesteps}, or the T a "
                            "searched --spec records)")
        g.add_argument("--encoder", help=f"input encoder: rate, direct, direct8 (default "
                                         f"{d.student.encoder}, or the one a searched --spec records)")
        g.add_argument("--spec", metavar="YAML",
                       help="SNN architecture spec, e.g. the spec.yaml 'neurokd search' writes "
                            "(default: one hidden dense layer of student.hidden units)")
    p.add_argument("--out", required=True, metavar="DIR", help=out_help)
    p.add_argument("--force", action="store_true", help=FORCE_HELP)


def _progress_args(p: argparse.ArgumentParser, training: bool = True) -> None:
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars; training prints one line per epoch instead (as it does "
                        "whenever the output is not a terminal)" if training else
                        "no progress bars (none are shown when the output is not a terminal)")
    if training:
        p.add_argument("--device", metavar="DEVICE",
                       help="where training runs: auto (a GPU if PyTorch sees one, else the CPU), "
                            "cpu, cuda or cuda:N (config key device, default auto). Started by "
                            "torchrun --nproc_per_node N, the command trains data-parallel in N "
                            "processes (gloo on CPUs, NCCL on GPUs); --set student.batch_size "
                            "and the like stay the global batch")


def _lava_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--samples", type=int, metavar="N",
                   help="first N test samples to run through Lava (default: lava.samples of the "
                        "run that trained the network)")
    p.add_argument("--backend", choices=_choices("lava", "backend"), default="auto",
                   help="auto: Loihi 2 if lava-loihi reports one, else the CPU simulator")
    p.add_argument("--data-dir", metavar="DIR", help="dataset folder, if not where the network was trained")
    p.add_argument("--metrics", metavar="JSON", help="also write the results to this JSON file")
    p.add_argument("--json", action="store_true",
                   help="print the results as one JSON object on stdout instead of a table")
    p.add_argument("--force", action="store_true",
                   help="replace --metrics if it is a metrics file neurokd wrote")


def _run_args(p: argparse.ArgumentParser, example: str, training: bool = True) -> None:
    """--set, --out, --force and --no-progress of a command that writes one run directory."""
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help=f"override a config value, e.g. --set {example} (repeatable)")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory to create")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    _progress_args(p, training=training)


def _teacher_args(p: argparse.ArgumentParser, required: bool, note: str = "") -> None:
    """--teacher and the options of a DNN brought from elsewhere (``neurokd.interop.teachers``)."""
    p.add_argument("--teacher", required=required, metavar="TEACHER",
                   help="the DNN: a neurokd teacher checkpoint (teacher.pt), an ONNX file "
                        "(*.onnx: Gemm, MatMul+Add, Conv, Relu, BatchNormalization, AveragePool, "
                        "GlobalAveragePool, Flatten/Reshape, Dropout), or MODULE:FACTORY with "
                        "--teacher-weights: MODULE is imported from the current folder or the "
                        "Python path, which runs its code (name only code you trust), and "
                        "FACTORY() builds the nn.Module" + note)
    p.add_argument("--teacher-weights", metavar="FILE",
                   help="state_dict of a MODULE:FACTORY teacher (saved with torch.save; read as "
                        "tensors only, with torch.load(weights_only=True) after an archive check "
                        "that refuses TorchScript and other code, and loaded strictly); for an "
                        "ONNX teacher, "
                        "weights that replace the file's (e.g. the teacher_weights.pt of a "
                        "co-learning run)")
    p.add_argument("--teacher-kwargs", metavar="YAML",
                   help="keyword arguments of FACTORY, a YAML or JSON mapping, e.g. "
                        "'{hidden: 64}' (default: none)")


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


# The proxies `search --proxy` offers and its strategies (neurokd.nas.proxies.PROXIES and
# neurokd.nas.search.STRATEGIES; named here so that --help does not import torch, and a test keeps
# them equal to the registries).
SEARCH_PROXIES = ("synops", "params", "gradsign", "grad_stats", "zico_mean", "grad_cosine",
                  "jacob_cov", "jacob_cov_wide", "snip", "snip_wide", "synflow", "snasnet", "sahd",
                  "naswot")
SEARCH_STRATEGIES = ("evolution", "random")
TRAIN_TOP_EPOCHS = 5


def _number(text: str) -> float:
    """A float option that also reads 2e6; a malformed one is argparse's one-line error."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


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
    _config_args(p, "run directory to create", teacher=True, student=True, epochs="student")
    p.add_argument("--teacher-epochs", type=int, metavar="N",
                   help="training epochs of the teacher (teacher.epochs, default "
                        f"{_defaults().teacher.epochs}; early stopping may end it sooner)")
    p.add_argument("--samples", type=int, metavar="N",
                   help=f"first N test samples to run through Lava (lava.samples, default "
                        f"{_defaults().lava.samples})")
    p.add_argument("--backend", choices=_choices("lava", "backend"),
                   help="Lava backend (lava.backend, default auto: Loihi 2 if lava-loihi reports "
                        "one, else the CPU simulator)")
    p.add_argument("--ignore-fit", action="store_true", help=IGNORE_FIT_HELP)
    _progress_args(p)

    p = sub.add_parser("train-teacher", help="train a DNN teacher",
                       description="Train a teacher DNN; writes DIR/teacher.pt, config.yaml, "
                                   "metrics.json and training_curves.png.")
    _config_args(p, "run directory to create", teacher=True, student=False, epochs="teacher")
    _progress_args(p)

    p = sub.add_parser("train-snn", help="train an SNN student directly",
                       description="Train an SNN of slayer CUBA blocks with surrogate gradients; "
                                   "writes DIR/snn.pt, config.yaml, metrics.json and "
                                   "training_curves.png.")
    _config_args(p, "run directory to create", teacher=False, student=True, epochs="student")
    _progress_args(p)

    p = sub.add_parser("distill", help="train an SNN student from DNN teachers (co-learning, KD, ...)",
                       description="Train an SNN student with a DNN teacher: co-learning (both "
                                   "directions), classic KD, FitNet hints, relational KD, a teacher "
                                   "ensemble, or none. Writes DIR/snn.pt (and the co-learned "
                                   "teacher.pt), config.yaml, metrics.json and "
                                   "training_curves.png.")
    _teacher_args(p, required=False, note="; every method but none needs one")
    p.add_argument("--method", choices=_choices("distill", "method"),
                   help="distillation method (distill.method; default colearn)")
    # the student's spec is --spec, as for demo and train-snn; --student is kept for old scripts
    p.add_argument("--student", dest="spec", help=argparse.SUPPRESS)
    _config_args(p, "run directory to create", teacher=False, student=True, epochs="student")
    _progress_args(p)

    p = sub.add_parser("export", help="export a trained SNN to a netx HDF5 network",
                       description="Export an SNN checkpoint to netx HDF5 (loadable by "
                                   "lava.lib.dl.netx.hdf5.Network).")
    p.add_argument("--snn", required=True, metavar="CKPT", help="SNN checkpoint (snn.pt)")
    p.add_argument("--out", required=True, metavar="FILE", help="network file to write (.net)")
    p.add_argument("--data-dir", metavar="DIR", help="dataset folder for the 24-bit overflow check, if "
                                                     "not where the SNN was trained")
    p.add_argument("--force", action="store_true",
                   help="replace --out if it is a network neurokd exported")
    p.add_argument("--ignore-fit", action="store_true", help=IGNORE_FIT_HELP)
    p.add_argument("--format", choices=["netx", "nir"], default="netx",
                   help="netx (default): HDF5 for Lava; nir: a NIR graph (nir.read, snntorch's "
                        "import_from_nir), see neurokd/interop/nir/")
    p.add_argument("--dt", type=float, default=1e-4, metavar="SECONDS",
                   help="nir: the time step the graph's time constants are written for "
                        "(tau = dt / decay; default %(default)s, snntorch's)")

    p = sub.add_parser("import", help="import a NIR graph (e.g. from snntorch) as an SNN checkpoint",
                       description="Read a NIR graph whose nodes form one feed-forward chain of "
                                   "Affine/Linear, Conv2d, Flatten and LIF/CubaLIF/IF nodes and "
                                   "write it as a float SNN checkpoint that 'neurokd quantize' "
                                   "takes. Writes snn.pt, spec.yaml, config.yaml and metrics.json "
                                   "(test accuracy of the graph as written and after import, and "
                                   "every approximation of the mapping).")
    p.add_argument("graph", metavar="GRAPH.nir", help="NIR graph file (nir.write's HDF5)")
    p.add_argument("--dataset", help=DATASET_HELP)
    p.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    p.add_argument("--timesteps", "-T", type=int, metavar="T",
                   help=f"input time steps the graph's network reads (default "
                        f"{_defaults().student.timesteps})")
    p.add_argument("--encoder", help=f"input encoder the network was trained with: rate, direct, "
                                     f"direct8 (default {_defaults().student.encoder})")
    p.add_argument("--hardware", help="target profile (loihi2, loihi1) or a profile YAML "
                                      "(default loihi2)")
    p.add_argument("--dt", type=float, default=1e-4, metavar="SECONDS",
                   help="time step the graph's time constants are read with (decay = dt/tau; "
                        "default %(default)s, snntorch's)")
    p.add_argument("--seed", type=int, help="seed of the data split and encoding (default 0)")
    p.add_argument("--config", metavar="YAML", help="configuration file (configs/demo.yaml)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override a config value, e.g. --set data.limit=500 (repeatable)")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory to create")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)

    p = sub.add_parser("quantize", help="quantization-aware training of an SNN for the chip",
                       description="Quantize a trained SNN to the integers of a Loihi profile: "
                                   "trainable quantizer scales, layers entering quantization by a "
                                   "probability schedule, distillation from the full-precision "
                                   "model. Writes snn.pt (verify it with 'neurokd verify'), "
                                   "network.net, metrics.json and, except for ptq, "
                                   "training_curves.png.")
    p.add_argument("--snn", required=True, metavar="CKPT", help="trained full-precision SNN (snn.pt)")
    p.add_argument("--hardware", help="target profile (loihi2, loihi1) or a profile YAML "
                                      "(default: the SNN's own)")
    p.add_argument("--bits", type=int, help="weight bits of every layer (default 8)")
    p.add_argument("--layer-bits", metavar="B,B,...", help="bits per spiking layer, e.g. 8,4")
    p.add_argument("--method", choices=_choices("quant", "method"),
                   help="quantization method (default lsq_prob_kd)")
    p.add_argument("--kd-from", metavar="CKPT", help="full-precision supervisor: a teacher or SNN "
                                                      "checkpoint (default: the float SNN itself)")
    p.add_argument("--epochs", type=int, metavar="N",
                   help=f"most QAT epochs (quant.epochs, default {_defaults().quant.epochs})")
    p.add_argument("--fit-state", choices=_choices("quant", "fit_state"),
                   help="keep each layer's current and voltage inside the chip's state bits (24 on "
                        "Loihi) by "
                        "coarsening its weight step (fewer weight levels): measured, on up to 1024 "
                        "training samples; bound, for every admissible input; off (default): Lava "
                        "clips as the quantized model does, and the run reports what 'measured' "
                        "would cost (quant.fit_state; quant.state_target, default 0.75, is the "
                        "fraction of the limit kept)")
    p.add_argument("--data-dir", metavar="DIR", help="dataset folder, if not where the SNN was trained")
    p.add_argument("--ignore-fit", action="store_true", help=IGNORE_FIT_HELP)
    _run_args(p, "quant.lr=1e-3")

    p = sub.add_parser("convert", help="convert a trained DNN into a quantized Loihi SNN",
                       description="Turn a DNN teacher (Linear, Conv2d, ReLU, Flatten, BatchNorm, "
                                   "AvgPool2d) into an integrate-and-fire SNN on the chip's "
                                   "integers for T time steps: BatchNorm folded, pooling as "
                                   "strided convolution, thresholds balanced on data; with "
                                   "--method qkd (default) after quantization through "
                                   "distillation. Writes snn.pt (verify it with 'neurokd verify'), "
                                   "network.net, metrics.json and a rate-tracking plot.")
    _teacher_args(p, required=True)
    p.add_argument("--dataset", help="dataset: digits, mnist, sensing, modulation, symbols "
                                     "(default: the teacher run's for a neurokd checkpoint, digits "
                                     "for an ONNX or MODULE:FACTORY teacher)")
    p.add_argument("--timesteps", "-T", required=True, type=int, metavar="T",
                   help="SNN input time steps")
    p.add_argument("--hardware", help="target profile (loihi2, loihi1) or a profile YAML "
                                      "(default: the teacher run's, loihi2 unless set)")
    p.add_argument("--method", choices=_choices("convert", "method"),
                   help="qkd (default) or plain conversion")
    p.add_argument("--epochs", type=int, metavar="N",
                   help=f"most qkd fine-tuning epochs (convert.epochs, default "
                        f"{_defaults().convert.epochs})")
    p.add_argument("--data-dir", metavar="DIR", help="dataset folder, if not where the teacher was trained")
    p.add_argument("--ignore-fit", action="store_true", help=IGNORE_FIT_HELP)
    _run_args(p, "convert.percentile=99.5")

    p = sub.add_parser("search", help="training-free search for an SNN that fits the chip",
                       description="Sample Loihi-compatible SNN architectures, reject those over "
                                   "the budget (cores, synaptic memory, synaptic operations), "
                                   "score the rest at initialization with one proxy (no "
                                   "training), and write a ranked table, the Pareto front of "
                                   "score against estimated cores and synaptic operations, and "
                                   "the chosen spec (spec.yaml, with the T and encoder it was "
                                   "scored at, for --spec). With --train-top K, the K best "
                                   "candidates are trained briefly and the best of them by "
                                   "validation accuracy is chosen instead.")
    p.add_argument("--dataset", help=DATASET_HELP)
    p.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    p.add_argument("--hardware", help="target profile (loihi2, loihi1) or a profile YAML "
                                      "(default loihi2)")
    p.add_argument("--max-cores", type=int, metavar="N", help="budget: estimated cores (default: one chip)")
    p.add_argument("--max-memory", type=int, metavar="BYTES",
                   help="budget: synaptic memory (default: no limit)")
    p.add_argument("--max-synops", type=_number, metavar="N",
                   help="budget: synaptic operations per inference, as the resource model bounds "
                        "them (every input spiking at every one of the T steps: synapses x T), "
                        "e.g. 2e6 (default: no limit)")
    p.add_argument("--candidates", type=int, default=100, metavar="K",
                   help="architectures to score (default %(default)s)")
    p.add_argument("--proxy", default="synops",
                   help="score to maximise: " + ", ".join(SEARCH_PROXIES) + " (default synops: "
                        "the highest mean rank correlation with the trained score over the "
                        "converged digits, mnist and sensing ground truths, of the proxies no "
                        "table tuned; see benchmarks/results/nas_correlation.md)")
    p.add_argument("--all-proxies", action="store_true",
                   help="score every proxy, not only --proxy (all in ranked.csv; slower: the "
                        "gradient proxies need backward passes)")
    p.add_argument("--probe-tau-grad", type=_number, metavar="W",
                   help="surrogate-gradient width of the scoring probes (default: the spec "
                        "neuron's tau_grad, 0.03, the one training uses; snip_wide and "
                        "jacob_cov_wide keep their own)")
    p.add_argument("--train-top", type=int, metavar="K",
                   help="train the K best-ranked candidates briefly (student training, the "
                        "search's data, T, encoder and seed; --set student.lr=... applies) and "
                        "choose the best by validation accuracy (default: no training, the "
                        "proxy's best is chosen)")
    p.add_argument("--train-epochs", type=int, metavar="N",
                   help=f"most epochs per --train-top candidate (default {TRAIN_TOP_EPOCHS})")
    p.add_argument("--strategy", choices=SEARCH_STRATEGIES, default="evolution",
                   help="evolution (default): aging evolution over a population of 20, each "
                        "child a mutation of the best of 5 random members, the oldest retired; "
                        "random: independent samples of the space")
    p.add_argument("--space", metavar="YAML", help="search space, including the time steps T it "
                                                   "scores at (default: neurokd/nas/space.py)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="scoring processes (default %(default)s); the result does not depend on it")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="score on this running Ray cluster (host:port, or 'auto') instead of local "
                        "processes; needs the optional extra: pip install 'neurokd[ray]'")
    p.add_argument("--encoder", help="input encoder: rate, direct, direct8 (default rate); "
                                     "recorded in spec.yaml")
    p.add_argument("--seed", type=int, help="seed of the sampling, the data batches and the "
                                            "--train-top training (default 0)")
    _run_args(p, "data.limit=500", training=False)

    p = sub.add_parser("report", help="what a network costs on the chip: resources, activity, energy",
                       description="Per layer and in total: neurons, synapses, weight memory and "
                                   "cores on the SNN's hardware profile, whether it fits one chip, "
                                   "synaptic operations, neuron updates and activation sparsity "
                                   "measured on its test data, and its energy per inference on the "
                                   "chip against the DNN teacher's MACs on a conventional "
                                   "processor (figures and sources from the profile). With --out, "
                                   "writes report.json, report.md and energy_vs_accuracy.png.")
    p.add_argument("--snn", required=True, metavar="CKPT",
                   help="SNN checkpoint (snn.pt), float or quantized")
    p.add_argument("--teacher", metavar="CKPT", help="DNN teacher checkpoint (teacher.pt) to compare with")
    p.add_argument("--samples", type=int, metavar="N",
                   help="measure on the first N test samples (default: the whole test split)")
    p.add_argument("--data-dir", metavar="DIR", help="dataset folder, if not where the SNN was trained")
    p.add_argument("--out", metavar="DIR", help="run directory to create with the report files")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)

    p = sub.add_parser("run-lava", help="run an exported network in Lava and report accuracy",
                       description="Run a netx network on Loihi 2 or Lava's CPU simulator over "
                                   "test samples, one run with a reset between samples.")
    p.add_argument("--net", required=True, metavar="FILE", help="network file (.net)")
    _lava_args(p)
    _progress_args(p, training=False)

    p = sub.add_parser("verify", help="compare PyTorch and Lava output spikes step by step",
                       description="Run the same samples through the PyTorch SNN and Lava and "
                                   "compare output spikes bin by bin. Exits 1 on any mismatch.")
    p.add_argument("--snn", required=True, metavar="CKPT", help="SNN checkpoint (snn.pt)")
    p.add_argument("--net", metavar="FILE", help="its exported network; exported afresh if omitted")
    _lava_args(p)
    _progress_args(p, training=False)
    return parser


# The training commands' flags and the config keys they set (a command without the flag: None).
FLAG_KEYS = {"dataset": "data.dataset", "data_dir": "data.data_dir", "seed": "seed",
             "timesteps": "student.timesteps", "encoder": "student.encoder", "spec": "student.spec",
             "teacher_model": "teacher.model", "teacher_epochs": "teacher.epochs",
             "samples": "lava.samples", "backend": "lava.backend", "method": "distill.method",
             "device": "device"}


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
                                   "kd_from", "net", "space", "data_dir", "graph")]
    if cfg is not None:
        found += [cfg.student.spec, cfg.data.data_dir, *cfg.distill.ensemble]
    return found


def _run_dir(args: argparse.Namespace, cfg=None):
    from neurokd.fileio import RunDir

    return RunDir(args.out, force=args.force, inputs=_inputs(args, cfg), command=args.command)


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
    print(table([(k, v) for k, v in metrics.items() if k not in ("radio", *runs.SOURCE_KEYS)],
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
    metrics, qmodel, _ = runs.quantize(model, meta, cfg, run_dir, args.kd_from,
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

    _positive("--timesteps", args.timesteps)
    _positive("--epochs", args.epochs)
    ref = _teacher_ref(args)
    run_dir = _run_dir(args)
    base: Dict[str, Any] = {}  # a DNN from elsewhere: the defaults and the --dataset's presets
    if ref.kind == "checkpoint":  # a neurokd teacher: its run's configuration
        payload = load_checkpoint(args.teacher, "teacher")
        meta = payload.get("meta") or {}
        base = config_to_dict(pipeline.config_from_meta(meta, args.data_dir, where=args.teacher))
        base.pop("convert", None)
    values = {"hardware": args.hardware, "student.timesteps": args.timesteps,
              "student.encoder": "direct", "convert.method": args.method,
              "convert.epochs": args.epochs, "data.dataset": args.dataset,
              "data.data_dir": args.data_dir, "device": args.device}
    cfg = build_config(None, args.set, values, base=base)
    metrics, _ = runs.convert(cfg, ref, run_dir, progress=_progress(args), log=print,
                              ignore_fit=args.ignore_fit)
    shown = [(k, v) for k, v in metrics.items()
             if k not in ("layers", "converted_layers", "radio", *runs.SOURCE_KEYS)]
    shown += [(f"layer {i} ({row['kind']}) rate corr.", row["correlation"])
              for i, row in enumerate(metrics["layers"])]
    print(table(shown, title=f"convert: {args.teacher} → {cfg.hardware}, T = {args.timesteps}"))
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

    for name in ("--candidates", "--workers", "--max-cores", "--max-memory", "--max-synops",
                 "--probe-tau-grad", "--train-top", "--train-epochs"):
        _positive(name, getattr(args, name[2:].replace("-", "_")))
    if args.train_epochs is not None and args.train_top is None:
        raise NeurokdError("--train-epochs goes with --train-top")
    if args.train_top is not None and args.train_top > args.candidates:
        raise NeurokdError(f"--train-top {args.train_top} is more than the {args.candidates} "
                           "candidates the search scores (--candidates)")
    epochs = args.train_epochs or TRAIN_TOP_EPOCHS
    cfg = build_config(None, args.set, {"data.dataset": args.dataset, "data.data_dir": args.data_dir,
                                        "hardware": args.hardware, "seed": args.seed,
                                        "student.encoder": args.encoder})
    space = load_space(args.space)
    res = runs.search(cfg, space, Budget(args.max_cores, args.max_memory, args.max_synops),
                      _run_dir(args, cfg), proxy=args.proxy, strategy=args.strategy,
                      candidates=args.candidates, workers=args.workers, ray_address=args.ray,
                      all_proxies=args.all_proxies, tau_grad=args.probe_tau_grad,
                      train_top=args.train_top, train_epochs=epochs, progress=_progress(args),
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
    print(f"chosen: {describe(chosen.spec)} → {args.out}/spec.yaml (T = {space.timesteps}, "
          f"encoder {cfg.student.encoder}, recorded in the spec); train it with: neurokd demo "
          f"--spec {args.out}/spec.yaml --out runs/searched")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from neurokd import pipeline
    from neurokd.deploy.export import is_neurokd_network
    from neurokd.fileio import check_output_file

    if args.format == "nir":
        return _export_nir(args)
    check_output_file(args.out, _inputs(args), args.force, ours=is_neurokd_network)
    model, meta = pipeline.load_snn(args.snn)
    cfg = pipeline.config_from_meta(meta, args.data_dir, where=args.snn)
    try:
        ds = pipeline.load_data(cfg)
    except NeurokdError as exc:
        ds = None
        print(f"note: 24-bit overflow check skipped, no data ({exc})")
    path = pipeline.export_snn(model, args.out, meta, ds, log=print, replace=args.force,
                               check_fit=not args.ignore_fit)
    print(f"exported {args.snn} → {path} (netx HDF5, {model.window_pad} trailing zero frames "
          f"per sample, window {meta['timesteps'] + model.window_pad} steps)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from neurokd import runs
    from neurokd.metrics import energy

    _positive("--samples", args.samples)
    run_dir = _run_dir(args) if args.out is not None else None  # --out is checked before any work
    report, written = runs.report(args.snn, args.teacher, run_dir, data_dir=args.data_dir,
                                  samples=args.samples, version=__version__)
    print(energy.report_markdown(report), end="")
    if args.out is not None:
        print(f"run directory: {args.out} ({', '.join(written)})")
    return 0


def _positive_dt(dt: float) -> None:
    from neurokd.interop.nir import DT_RANGE

    if not (math.isfinite(dt) and DT_RANGE[0] <= dt <= DT_RANGE[1]):
        raise NeurokdError(f"--dt must be a number of seconds from {DT_RANGE[0]:g} to "
                           f"{DT_RANGE[1]:g}, got {dt:g}")


def _export_nir(args: argparse.Namespace) -> int:
    from neurokd import pipeline
    from neurokd.interop.nir import export_nir, is_neurokd_nir
    from neurokd.fileio import check_output_file

    _positive_dt(args.dt)
    check_output_file(args.out, _inputs(args), args.force, ours=is_neurokd_nir)
    model, meta = pipeline.load_snn(args.snn)
    path = export_nir(model, args.out, meta, dt=args.dt, replace=args.force)
    kind = "quantized" if model.quantized else "float"
    print(f"exported {args.snn} → {path} (NIR graph of the {kind} network, dt = {args.dt:g}; "
          f"it reads {meta['timesteps']} input frames without Loihi's per-layer delay, so its "
          f"output at step t is the network's at step t + {model.window_pad})")
    return 0


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
    metrics, ds = runs.import_graph(cfg, args.graph, args.out, args.dt, force=args.force,
                                    inputs=_inputs(args, cfg), log=print)
    shown = [(k, v) for k, v in metrics.items()
             if k not in ("layers", "approximations", "nir_nodes", "source")]
    print(table(shown, title=f"import: {args.graph} → {ds.name}, T = {cfg.student.timesteps}"))
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


DATA_PARALLEL = ("demo", "train-teacher", "train-snn", "distill", "quantize", "convert")


def _data_parallel(args: argparse.Namespace) -> int:
    """The command as one of torchrun's processes (``neurokd.runtime``): process 0 as usual, the
    others silent, into a temporary run directory they delete."""
    import contextlib
    import shutil

    from neurokd import runtime

    if args.command not in DATA_PARALLEL:
        raise NeurokdError(f"{args.command} does not train; run it without torchrun (torchrun "
                           f"runs {', '.join(DATA_PARALLEL)} data-parallel)")
    w = runtime.init_distributed(getattr(args, "device", None) or "auto")
    try:
        if w.main:
            return COMMANDS[args.command](args)
        scratch = tempfile.mkdtemp(prefix=f"neurokd-rank{w.rank}-")
        try:
            args.out, args.force, args.no_progress = str(Path(scratch) / "run"), False, True
            with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
                return COMMANDS[args.command](args)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    finally:
        runtime.shutdown_distributed()


def _run_command(args: argparse.Namespace) -> int:
    from neurokd.runtime import launched_by_torchrun

    try:
        if launched_by_torchrun():
            return _data_parallel(args)
        return COMMANDS[args.command](args)
    except NeurokdError as exc:
        if args.debug:
            raise
        print(f"neurokd: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except SystemExit as exc:  # neurokd never exits from inside a command: a user's code did
        if args.debug:
            raise
        print(f"neurokd: error: code loaded from a teacher's module or factory tried to exit "
              f"(sys.exit({exc.code!r})); stopped, nothing half-written was kept", file=sys.stderr)
        return EXIT_USER_ERROR
    except MemoryError:
        if args.debug:
            raise
        print("neurokd: error: ran out of memory; nothing half-written was kept (a smaller "
              "input, batch or window needs less)", file=sys.stderr)
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


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Warnings as one line each on stderr (once per message), not Python's two-line form with
    a source line. numpy's floating-point warnings and matplotlib's are not shown: every value
    neurokd saves is checked finite, and a plot's cosmetic complaints are no news to a user."""
    import warnings

    import numpy as np

    shown = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = str(message).strip().splitlines()[0] if str(message).strip() else category.__name__
        if text not in shown:
            shown.add(text)
            print(f"neurokd: warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"numpy(\.|$)")
        warnings.filterwarnings("ignore", module=r"matplotlib(\.|$)")
        with np.errstate(all="ignore"):
            yield


def main(argv: Optional[List[str]] = None) -> int:
    """Run one command. SIGINT, SIGTERM and SIGHUP (to the process or its group) unwind it like an
    error: run directories and files being written are removed, child processes (Lava's runtime,
    search workers) are stopped, and the exit status is 128 + the signal number (130 for Ctrl-C,
    143 for SIGTERM), with one line on stderr. See ``neurokd.interrupts``."""
    import signal

    from neurokd.interrupts import kill_descendants, signals_to_exceptions

    if hasattr(sys.stdout, "reconfigure") and not sys.stdout.line_buffering:
        sys.stdout.reconfigure(line_buffering=True)  # a file or a pipe gets each line as it is printed
    with signals_to_exceptions() as state, _one_line_warnings():
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
