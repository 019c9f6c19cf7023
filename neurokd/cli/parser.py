"""The command line's parser: one function per command adds its subparser and options."""

from __future__ import annotations

import argparse
import math
from typing import List, Optional

from neurokd import __version__

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
                   help="test samples to run through Lava, the first N (radio: N spread over every SNR; "
                        "default: lava.samples of the "
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
                        "(*.onnx; conversion maps Gemm, MatMul+Add, Conv, Relu, "
                        "BatchNormalization, AveragePool, GlobalAveragePool, Flatten/Reshape, "
                        "Dropout; a teacher that is not converted may hold any operator "
                        "onnx2torch reads, MaxPool included), or MODULE:FACTORY with "
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


def _names(literal_name: str) -> List[str]:
    """The values of one of the configuration's named ``Literal`` types (``neurokd.config``)."""
    from typing import get_args

    from neurokd import config

    return list(get_args(getattr(config, literal_name)))


SEARCH_PROXIES = _names("SearchProxy")
SEARCH_STRATEGIES = _names("SearchStrategy")
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


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the whole flow: teacher, SNN, export, Lava, verify",
                       description="Train a DNN teacher and an SNN student, export the SNN to netx, "
                                   "run it in Lava and compare it spike for spike with PyTorch.")
    _config_args(p, "run directory to create", teacher=True, student=True, epochs="student")
    p.add_argument("--teacher-epochs", type=int, metavar="N",
                   help="training epochs of the teacher (teacher.epochs, default "
                        f"{_defaults().teacher.epochs}; early stopping may end it sooner)")
    p.add_argument("--samples", type=int, metavar="N",
                   help=f"test samples to run through Lava, the first N (radio: N spread over every SNR; "
                        f"lava.samples, default "
                        f"{_defaults().lava.samples})")
    p.add_argument("--backend", choices=_choices("lava", "backend"),
                   help="Lava backend (lava.backend, default auto: Loihi 2 if lava-loihi reports "
                        "one, else the CPU simulator)")
    p.add_argument("--ignore-fit", action="store_true", help=IGNORE_FIT_HELP)
    _progress_args(p)


def _add_train_teacher(sub) -> None:
    p = sub.add_parser("train-teacher", help="train a DNN teacher",
                       description="Train a teacher DNN; writes DIR/teacher.pt, config.yaml, "
                                   "metrics.json and training_curves.png.")
    _config_args(p, "run directory to create", teacher=True, student=False, epochs="teacher")
    _progress_args(p)


def _add_train_snn(sub) -> None:
    p = sub.add_parser("train-snn", help="train an SNN student directly",
                       description="Train an SNN of slayer CUBA blocks with surrogate gradients; "
                                   "writes DIR/snn.pt, config.yaml, metrics.json and "
                                   "training_curves.png.")
    _config_args(p, "run directory to create", teacher=False, student=True, epochs="student")
    _neuron_arg(p)
    _progress_args(p)


def _neuron_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--neuron", choices=_choices("student", "neuron"),
                   help="cuba (default) or sdnn: a sigma-delta student (graded input: --encoder "
                        "direct8 or signed8; distill by --method kd only)")
    _sparsity_args(p)


def _sparsity_args(p: argparse.ArgumentParser, how: str = "") -> None:
    """--sparsity and --target-rate: what the loss charges a sigma-delta network's messages."""
    p.add_argument("--sparsity", type=float, metavar="LAMBDA",
                   help=f"sdnn: {how}LAMBDA times the estimated synaptic operations per DNN MAC "
                        "added to the loss (convert.sparsity)")
    p.add_argument("--target-rate", type=float, metavar="R",
                   help="sdnn: aim at R synaptic operations per DNN MAC (0.2: a fifth of the "
                        "DNN's work); the loss charges only the estimate's excess over R, times "
                        "--sparsity (10 by default) (convert.target_rate)")


def _add_distill(sub) -> None:
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
    _neuron_arg(p)
    _progress_args(p)


def _add_export(sub) -> None:
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
    p.add_argument("--format", choices=_names("ExportFormat"), default="netx",
                   help="netx (default): HDF5 for Lava; nir: a NIR graph (nir.read, snntorch's "
                        "import_from_nir), see neurokd/interop/nir/")
    p.add_argument("--dt", type=float, default=1e-4, metavar="SECONDS",
                   help="nir: the time step the graph's time constants are written for "
                        "(tau = dt / decay; default %(default)s, snntorch's)")


def _add_import(sub) -> None:
    p = sub.add_parser("import", help="import a NIR graph (e.g. from snntorch) as an SNN checkpoint",
                       description="Read a NIR graph whose nodes form one feed-forward chain of "
                                   "Affine/Linear, Conv2d, Flatten and LIF/CubaLIF/IF nodes and "
                                   "write it as a float SNN checkpoint that 'neurokd quantize' "
                                   "takes. Writes snn.pt, spec.yaml, config.yaml and metrics.json "
                                   "(test accuracy of the graph as written and after import, and "
                                   "every approximation of the mapping).")
    p.add_argument("graph", metavar="GRAPH.nir", nargs="?",
                   help="NIR graph file (nir.write's HDF5); or give --snntorch instead")
    p.add_argument("--snntorch", metavar="MODULE:FACTORY",
                   help="an snntorch model itself: MODULE is imported from the current folder "
                        "or the Python path (which runs its code: name only code you trust) and "
                        "FACTORY() builds it, with init_hidden=True neurons; scalar or "
                        "per-neuron parameters; written into the run as graph.nir by snntorch's "
                        "export, then imported")
    p.add_argument("--weights", metavar="FILE",
                   help="state_dict of the --snntorch model (torch.save; read as tensors only)")
    p.add_argument("--kwargs", metavar="YAML", help="keyword arguments of FACTORY")
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


def _add_quantize(sub) -> None:
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
    p.add_argument("--kd-from", metavar="CKPT", help="full-precision supervisor: an SNN checkpoint, "
                                                      "or a DNN teacher in any form distill takes "
                                                      "(teacher.pt, an ONNX file, MODULE:FACTORY "
                                                      "with --kd-from-weights) (default: the float "
                                                      "SNN itself)")
    p.add_argument("--kd-from-weights", metavar="FILE",
                   help="state_dict of a MODULE:FACTORY --kd-from teacher (as --teacher-weights)")
    p.add_argument("--kd-from-kwargs", metavar="YAML",
                   help="keyword arguments of a MODULE:FACTORY --kd-from teacher")
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


def _add_convert(sub) -> None:
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
    p.add_argument("--timesteps", "-T", type=int, metavar="T",
                   help="SNN input time steps of an integrate-and-fire network (--neuron cuba); "
                        "without it, a sigma-delta network (--neuron sdnn) is made")
    p.add_argument("--hardware", help="target profile (loihi2, loihi1) or a profile YAML "
                                      "(default: the teacher run's, loihi2 unless set)")
    p.add_argument("--neuron", choices=_choices("convert", "neuron"),
                   help="cuba (integrate-and-fire, binary spikes, a time window: the default "
                        "with --timesteps) or sdnn (sigma-delta, graded spikes: the DNN's "
                        "activations layer for layer, Loihi 2 only; the default without)")
    p.add_argument("--delta-threshold", type=float, metavar="F",
                   help="sdnn: each layer's delta threshold as a fraction of its largest "
                        "calibrated activation (default 0: every change is sent)")
    _sparsity_args(p, "fine-tune first (method qkd) with ")
    p.add_argument("--method", choices=_choices("convert", "method"),
                   help="qkd (default; for sdnn only with --sparsity or --target-rate: "
                        "fine-tuning on the 8-bit grid) or plain conversion")
    p.add_argument("--encoder", metavar="NAME",
                   help="the SNN's graded input: direct (default), direct8, or signed8 (the "
                        "signed I/Q as it is; the default for a teacher trained on it)")
    p.add_argument("--epochs", type=int, metavar="N",
                   help=f"most qkd fine-tuning epochs (convert.epochs, default "
                        f"{_defaults().convert.epochs})")
    p.add_argument("--data-dir", metavar="DIR", help="dataset folder, if not where the teacher was trained")
    p.add_argument("--ignore-fit", action="store_true", help=IGNORE_FIT_HELP)
    _run_args(p, "convert.percentile=99.5")


def _add_search(sub) -> None:
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
    p.add_argument("--max-energy", type=_number, metavar="JOULES",
                   help="budget: energy per inference at that upper bound, priced by the digital "
                        "model neurokd report uses (both sides alike), e.g. 5e-6 (default: no "
                        "limit)")
    p.add_argument("--candidates", type=int, default=100, metavar="K",
                   help="architectures to score (default %(default)s)")
    p.add_argument("--proxy", default="synops", choices=SEARCH_PROXIES, metavar="NAME",
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
    p.add_argument("--neuron", choices=["cuba", "sdnn"],
                   help="the candidates' neuron family (default: the space's, cuba): sdnn scores "
                        "sigma-delta networks, their ReLU networks at initialization on graded "
                        "input, one frame each")
    p.add_argument("--encoder", help="input encoder: rate, direct, direct8, signed8 (default rate; "
                                     "sdnn: direct8, signed8 on radio data); recorded in spec.yaml")
    p.add_argument("--seed", type=int, help="seed of the sampling, the data batches and the "
                                            "--train-top training (default 0)")
    p.add_argument("--device", metavar="DEVICE",
                   help="where the probes and the --train-top training run: cpu (default), cuda "
                        "or cuda:N (a GPU scores in this process: --workers 1)")
    _run_args(p, "data.limit=500", training=False)


def _add_report(sub) -> None:
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
    _teacher_args(p, required=False, note="; the DNN to compare with")
    p.add_argument("--samples", type=int, metavar="N",
                   help="measure on the first N test samples (default: the whole test split)")
    p.add_argument("--data-dir", metavar="DIR", help="dataset folder, if not where the SNN was trained")
    p.add_argument("--device", metavar="DEVICE",
                   help="where the networks' forward passes run: cpu (default), cuda or cuda:N; "
                        "the counts are made on the CPU from their outputs")
    p.add_argument("--out", metavar="DIR", help="run directory to create with the report files")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)


def _add_run_lava(sub) -> None:
    p = sub.add_parser("run-lava", help="run an exported network in Lava and report accuracy",
                       description="Run a netx network on Loihi 2 or Lava's CPU simulator over "
                                   "test samples, one run with a reset between samples.")
    p.add_argument("--net", required=True, metavar="FILE", help="network file (.net)")
    _lava_args(p)
    _progress_args(p, training=False)


def _add_verify(sub) -> None:
    p = sub.add_parser("verify", help="compare PyTorch and Lava output spikes step by step",
                       description="Run the same samples through the PyTorch SNN and Lava and "
                                   "compare output spikes bin by bin. Exits 1 on any mismatch.")
    p.add_argument("--snn", required=True, metavar="CKPT", help="SNN checkpoint (snn.pt)")
    p.add_argument("--net", metavar="FILE", help="its exported network; exported afresh if omitted")
    _lava_args(p)
    _progress_args(p, training=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neurokd",
        description="Compress DNNs into quantized spiking networks for Loihi 2 and Lava.")
    parser.add_argument("--version", action="version", version=f"neurokd {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_demo(sub)
    _add_train_teacher(sub)
    _add_train_snn(sub)
    _add_distill(sub)
    _add_export(sub)
    _add_import(sub)
    _add_quantize(sub)
    _add_convert(sub)
    _add_search(sub)
    _add_report(sub)
    _add_run_lava(sub)
    _add_verify(sub)
    return parser
