"""The stages of the DNN → SNN → Lava flow as library functions (the CLI and notebooks call these).

Each stage takes plain values and returns plain values; files are written only by the ``save_*``
and ``run_*`` functions, always atomically.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from neurokd.config import RunConfig, config_to_dict
from neurokd.data.datasets import Dataset, load_dataset
from neurokd.data.encoders import get_encoder
from neurokd.data.radio import augmentation
from neurokd.deploy.verify import lava_frames, run_on_lava, verify
from neurokd import runtime
from neurokd.errors import NeurokdError
from neurokd.h5safe import available_memory
from neurokd.log import Log, quiet
from neurokd.hardware import load_profile
from neurokd.interop.teachers import TeacherRef
from neurokd.models.checkpoint import load_checkpoint, save_checkpoint
from neurokd.models.cuba.net import SpikingNet, snn_from_checkpoint
from neurokd.models.cuba.quantized import qsnn_from_checkpoint
from neurokd.models.sigma_delta.net import sdnn_from_checkpoint
from neurokd.models.spec import ArchSpec, default_spec, load_spec
from neurokd.models.teachers import build_teacher, teacher_arch, teacher_from_checkpoint
from neurokd.metrics.resources import check_fit as check_fit_chip
from neurokd.training import (accuracy, encoded_batches, fit, identity, logits_of, make_prepare,
                              seed_everything, spike_counts)

__all__ = [
    "as_direct_training", "available_memory", "check_config", "check_memory",
    "check_names", "config_from_meta", "convert", "export_snn", "identity", "import_nir",
    "is_radio", "kd_reference", "lava_frames", "load_data", "load_snn", "load_teacher",
    "load_teachers", "logits_of", "make_prepare", "memory_estimate", "quantize", "run_on_lava",
    "save_snn", "save_teacher", "snn_meta", "spike_counts", "student_spec", "train_candidates",
    "train_distilled", "train_snn", "train_teacher", "verify", "warn_if_chance",
]


def check_names(cfg: RunConfig) -> None:
    """Fail on any unknown dataset, teacher, encoder or hardware name in ``cfg``."""
    from neurokd.data.datasets import DATASETS
    from neurokd.models.teachers import TEACHERS

    DATASETS.get(cfg.data.dataset)
    TEACHERS.get(cfg.teacher.model)
    enc, profile = get_encoder(cfg.student.encoder), load_profile(cfg.hardware)
    if enc.message_bits > profile.max_message_bits:
        raise NeurokdError(f"encoder {enc.name} sends {enc.message_bits}-bit graded spikes; a "
                           f"{profile.name} message carries at most {profile.max_message_bits}: use rate")
    runtime.resolve_device(cfg.device)  # asking for a GPU where there is none fails here


def check_config(cfg: RunConfig) -> None:
    """Fail on any unknown name or unreadable file in ``cfg`` before work starts."""
    check_names(cfg)
    if cfg.student.spec:
        load_spec(cfg.student.spec)


# ---------------------------------------------------------------- data
def load_data(cfg: RunConfig, log: Log = quiet) -> Dataset:
    from neurokd.data.radioml import radio_options

    d = cfg.data
    extra = radio_options(d.dataset, d.radio, d.generator_seed, get_encoder(cfg.student.encoder).signed)
    ds = load_dataset(d.dataset, data_dir=d.data_dir, val_fraction=d.val_fraction,
                      test_fraction=d.test_fraction,
                      seed=cfg.seed if d.split_seed is None else d.split_seed, limit=d.limit, **extra)
    for note in ds.notes:
        log(note)
    log(f"data: {ds.name} {list(ds.input_shape)}, {ds.num_classes} classes, "
        f"train/val/test = {len(ds.train)}/{len(ds.val)}/{len(ds.test)}")
    return ds


# ---------------------------------------------------------------- teacher
def train_teacher(cfg: RunConfig, ds: Dataset, progress: bool = True, log: Log = quiet
                  ) -> Tuple[nn.Module, Dict[str, Any]]:
    t = cfg.teacher
    seed_everything(cfg.seed)
    model = build_teacher(t.model, ds.input_shape, ds.num_classes, hidden=t.hidden)
    augment = augmentation(t.augment, ds)
    res = fit(model, ds.train, ds.val, identity, logits_of, epochs=t.epochs, lr=t.lr,
              batch_size=t.batch_size, patience=t.patience, weight_decay=t.weight_decay,
              seed=cfg.seed, desc=f"teacher {t.model}", progress=progress, log=log,
              device=cfg.device, schedule=t.schedule, train_prepare=augment)
    test_acc = accuracy(model.eval(), ds.test, identity, logits_of, seed=cfg.seed)
    return model, {"teacher_accuracy": test_acc, "teacher_val_accuracy": res.best_val_accuracy,
                   "teacher_epochs": res.epochs_run, "teacher_best_epoch": res.best_epoch,
                   "teacher_history": res.history}


def save_teacher(path: str | Path, model: nn.Module, cfg: RunConfig, ds: Dataset) -> Path:
    arch = getattr(model, "neurokd_arch", None) or teacher_arch(
        cfg.teacher.model, ds.input_shape, ds.num_classes, cfg.teacher.hidden)
    return save_checkpoint(path, "teacher", arch, model.state_dict(),
                           {"config": config_to_dict(cfg), "dataset": ds.name})


def load_teacher(path: str | Path) -> nn.Module:
    return teacher_from_checkpoint(load_checkpoint(path, "teacher"), where=str(path))


# ---------------------------------------------------------------- SNN student
def student_spec(cfg: RunConfig, ds: Dataset) -> ArchSpec:
    s = cfg.student
    spec = load_spec(s.spec) if s.spec else default_spec(ds.input_shape, ds.num_classes, s.hidden)
    spec.check_task(ds.num_classes, ds.input_shape)
    enc = get_encoder(s.encoder)
    if enc.signed and spec.input_threshold is None:
        # the first layer reads the signed integers as x · top, x in [-1, 1]: its threshold
        # scales with them, so its weights live on the same grid as every other layer's
        spec = spec.model_copy(update={"input_threshold": spec.neuron.threshold * enc.input_range[1]})
    return spec


def memory_estimate(cfg: RunConfig, ds: Dataset, spec: ArchSpec) -> Dict[str, int]:
    """Rough peak bytes of the SNN stages for this spec, window and batch: a lower bound meant to
    catch sizes that cannot fit (a typo in T or units), not to budget memory precisely."""
    from neurokd.metrics.resources import layer_resources

    window = cfg.student.timesteps + spec.num_spiking_layers
    inputs = int(np.prod(ds.input_shape))
    rows = layer_resources(spec, load_profile(cfg.hardware))
    neurons = sum(r.neurons for r in rows)
    params = sum(r.params for r in rows)
    # float32 states: input, current, voltage and spikes per neuron and step, for a batch, and
    # their gradients; weights with gradient and two Adam moments; Lava's int32 input stream.
    training = 4 * cfg.student.batch_size * window * (inputs + 3 * neurons) * 2 + 16 * params
    lava = 4 * cfg.lava.samples * window * (inputs + neurons) * 2
    return {"training": training, "lava": lava}


def check_memory(cfg: RunConfig, ds: Dataset, spec: ArchSpec, stages: Sequence[str] = ("training",)
                 ) -> None:
    """Refuse, before any work, a run whose SNN stages cannot fit in the memory available."""
    have = available_memory()
    if have is None:
        return
    need = memory_estimate(cfg, ds, spec)
    for stage in stages:
        if need[stage] > have:
            raise NeurokdError(
                f"the {stage} stage needs at least {need[stage] / 2**30:.1f} GiB "
                f"(T = {cfg.student.timesteps}, {spec.num_spiking_layers} spiking layers, batch "
                f"{cfg.student.batch_size}, {cfg.lava.samples} Lava samples) and "
                f"{have / 2**30:.1f} GiB is available; lower student.timesteps, the layer sizes, "
                "student.batch_size or lava.samples")


def warn_if_chance(val_accuracy: float, ds: Dataset, what: str, log: Log) -> bool:
    """Say so when training ended no better than always answering the most frequent class: the
    student's outputs fell silent or saturated (spike counts all equal), which happens on the radio
    datasets with raw-I/Q dense students."""
    majority = float(np.bincount(ds.val.y, minlength=ds.num_classes).max() / len(ds.val))
    if val_accuracy <= majority + 0.01:
        log(f"warning: {what}: best validation accuracy {val_accuracy:.4f} is at chance (the most "
            f"frequent class alone gives {majority:.4f}); its output spike counts carry no "
            "information. Try a lower student.lr, another seed, a convolutional spec, or "
            "'neurokd convert' from a trained DNN")
        return True
    return False


def as_direct_training(cfg: RunConfig) -> RunConfig:
    """A copy of ``cfg`` that says what ``train_snn`` does: the student learns from the labels
    alone (``distill.method: none``), so a run's saved configuration does not name a distillation
    method it never used."""
    out = cfg.model_copy(deep=True)
    out.distill.method = "none"
    return out


def train_snn(cfg: RunConfig, ds: Dataset, progress: bool = True, log: Log = quiet
              ) -> Tuple[SpikingNet, Dict[str, Any]]:
    """Train an SNN student directly with surrogate gradients (slayer's 8-bit weight rounding)."""
    s = cfg.student
    get_encoder(s.encoder)  # fail on an unknown encoder before building anything
    spec = student_spec(cfg, ds)
    check_memory(cfg, ds, spec)
    seed_everything(cfg.seed)
    model = SpikingNet(spec, load_profile(cfg.hardware))
    prepare = make_prepare(s.encoder, s.timesteps, model.window_pad)
    res = fit(model, ds.train, ds.val, prepare, spike_counts, epochs=s.epochs, lr=s.lr,
              batch_size=s.batch_size, patience=s.patience, weight_decay=s.weight_decay,
              seed=cfg.seed, desc="snn", progress=progress, log=log, device=cfg.device,
              schedule=s.schedule)
    test_acc = accuracy(model.eval(), ds.test, prepare, spike_counts, seed=cfg.seed)
    warn_if_chance(res.best_val_accuracy, ds, "snn", log)
    return model, {"snn_accuracy": test_acc, "snn_val_accuracy": res.best_val_accuracy,
                   "snn_epochs": res.epochs_run, "snn_best_epoch": res.best_epoch,
                   "snn_epoch_seconds": res.epoch_seconds, "snn_history": res.history}


def load_teachers(cfg: RunConfig, ds: Dataset, teacher: Optional[str | Path | TeacherRef]
                  ) -> List[nn.Module]:
    """The teachers a distillation method needs (neurokd checkpoints, ONNX files or a
    ``module:factory``, see ``neurokd.interop.teachers``), each checked against the data and carrying
    its ``neurokd_source``."""
    from neurokd.distill.colearn import uses_teacher
    from neurokd.distill.methods import DISTILL_METHODS
    from neurokd.interop.teachers import load_dnn, source_label
    from neurokd.models.dnn_checks import check_activations

    d = cfg.distill
    if not uses_teacher(d):
        return []
    if teacher is None:
        raise NeurokdError(f"method {d.method!r} needs a teacher checkpoint (--teacher)")
    several = DISTILL_METHODS.get(d.method).several_teachers
    paths = [teacher] + (list(d.ensemble) if several else [])
    if several and len(paths) < 2:
        raise NeurokdError("method 'ensemble' needs more teachers: --set distill.ensemble=[a.pt, b.pt]")
    teachers = [load_dnn(path, ds.input_shape, ds.num_classes, convertible=False)[0] for path in paths]
    for t in teachers:  # the probe ran 2 samples; training runs a whole batch through each teacher
        check_activations(t, ds.input_shape, cfg.student.batch_size,
                          source_label(t.neurokd_source), "distillation")
    return teachers


def train_distilled(cfg: RunConfig, ds: Dataset, teacher: Optional[str | Path | TeacherRef] = None,
                    progress: bool = True, log: Log = quiet
                    ) -> Tuple[SpikingNet, Optional[nn.Module], Dict[str, Any]]:
    """Train an SNN student with ``cfg.distill.method`` from the teacher checkpoint(s).

    Returns the student, the (co-learned or unchanged) first teacher, and metrics. Everything that
    can be wrong with the teachers, layers or shapes is raised before the first epoch.
    """
    from neurokd.distill.colearn import CoLearner, teacher_trains

    s, d = cfg.student, cfg.distill
    get_encoder(s.encoder)
    teachers = load_teachers(cfg, ds, teacher)
    spec = student_spec(cfg, ds)
    check_memory(cfg, ds, spec)
    seed_everything(cfg.seed)
    student = SpikingNet(spec, load_profile(cfg.hardware))
    prepare = make_prepare(s.encoder, s.timesteps, student.window_pad)
    raw = torch.as_tensor(ds.train.x[:2])
    learner = CoLearner(student, teachers, d, raw, prepare(raw, torch.Generator().manual_seed(0)))
    metrics: Dict[str, Any] = {"method": d.method}
    if teachers:
        metrics["teacher_accuracy"] = accuracy(teachers[0].eval(), ds.test, identity, logits_of)
        metrics["teacher_source"] = teachers[0].neurokd_source
        if len(teachers) > 1:
            metrics["ensemble_sources"] = [t.neurokd_source for t in teachers[1:]]
    res = fit(learner, ds.train, ds.val, prepare, lambda m, x: spike_counts(m.student, x),
              epochs=s.epochs, lr=s.lr, batch_size=s.batch_size, patience=s.patience,
              weight_decay=s.weight_decay, seed=cfg.seed, desc=f"distill {d.method}",
              schedule=s.schedule,
              progress=progress, log=log, param_groups=learner.param_groups(s.lr),
              objective=lambda m, raw_b, x, y: m.objective(raw_b, x, y), device=cfg.device)
    learner.eval()
    warn_if_chance(res.best_val_accuracy, ds, f"distill {d.method}", log)
    metrics.update({"snn_accuracy": accuracy(student, ds.test, prepare, spike_counts, seed=cfg.seed),
                    "snn_val_accuracy": res.best_val_accuracy, "snn_epochs": res.epochs_run,
                    "snn_best_epoch": res.best_epoch, "snn_epoch_seconds": res.epoch_seconds,
                    "snn_history": res.history})
    if teachers and teacher_trains(d):
        metrics["teacher_accuracy_after"] = accuracy(teachers[0], ds.test, identity, logits_of)
    return student, (teachers[0] if teachers else None), metrics


def snn_meta(cfg: RunConfig, ds: Dataset) -> Dict[str, Any]:
    return {"config": config_to_dict(cfg), "dataset": ds.name, "num_classes": ds.num_classes,
            "input_shape": list(ds.input_shape), "encoder": cfg.student.encoder,
            "timesteps": cfg.student.timesteps}


def save_snn(path: str | Path, model: SpikingNet, cfg: RunConfig, ds: Dataset) -> Path:
    return save_checkpoint(path, "snn", model.arch(), model.state_dict(), snn_meta(cfg, ds))


def load_snn(path: str | Path) -> Tuple[SpikingNet, Dict[str, Any]]:
    payload = load_checkpoint(path, "snn")
    meta = payload.get("meta", {})
    for key in ("encoder", "timesteps", "config"):
        if key not in meta:
            raise NeurokdError(f"{path}: SNN checkpoint lacks {key!r} in its metadata")
    arch = payload.get("arch") or {}
    load = (sdnn_from_checkpoint if arch.get("family") == "sdnn" else
            qsnn_from_checkpoint if arch.get("quant") is not None else snn_from_checkpoint)
    return load(payload, where=str(path)), meta


# ---------------------------------------------------------------- quantization-aware training
def kd_reference(path: str | Path | TeacherRef, ds: Dataset, meta: Dict[str, Any], bits: List[int]):
    """``reference(raw, x)`` of ``--kd-from``: a DNN teacher (any form ``distill`` takes) on the
    samples, or a float SNN (run in full precision) on the same encoded window."""
    from neurokd.interop.teachers import as_ref, load_dnn
    from neurokd.models.teachers import check_teacher_fits
    from neurokd.quant.qat import Reference, counts, full_precision

    ref = as_ref(path)
    if ref.kind != "checkpoint":  # an ONNX file or a module:factory: a DNN
        teacher = load_dnn(ref, ds.input_shape, ds.num_classes, convertible=False)[0]
        return Reference(teacher, lambda m, raw, x: m(raw))
    path = ref.ref
    payload = load_checkpoint(path)
    kind = payload.get("kind")
    if kind == "teacher":
        check_teacher_fits(payload.get("arch", {}), ds.num_classes, ds.input_shape, str(path))
        teacher = teacher_from_checkpoint(payload, where=str(path)).eval()
        return Reference(teacher, lambda m, raw, x: m(raw))
    ref, ref_meta = load_snn(path)
    if ref.quantized:
        raise NeurokdError(f"{path}: --kd-from needs a full-precision model, this SNN is quantized")
    if (ref_meta["encoder"], ref_meta["timesteps"]) != (meta["encoder"], meta["timesteps"]):
        raise NeurokdError(f"{path}: --kd-from SNN reads {ref_meta['timesteps']} steps of "
                           f"{ref_meta['encoder']} input; the student reads {meta['timesteps']} "
                           f"of {meta['encoder']}")
    if ref.num_classes != ds.num_classes:
        raise NeurokdError(f"{path}: --kd-from SNN predicts {ref.num_classes} classes, the data "
                           f"has {ds.num_classes}")
    fp = full_precision(ref, [8] * ref.spec.num_spiking_layers)

    def scores(m: nn.Module, raw: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        extra = m.window_pad - (x.shape[-1] - meta["timesteps"])
        if extra > 0:
            x = torch.cat([x, x.new_zeros(*x.shape[:-1], extra)], dim=-1)
        return counts(m, x)

    return Reference(fp, scores)


def quantize(snn: nn.Module, meta: Dict[str, Any], cfg: RunConfig, ds: Dataset,
             kd_from: Optional[str | Path] = None, progress: bool = True, log: Log = quiet,
             check_fit: bool = True):
    """Quantization-aware training of a trained float SNN for ``cfg.hardware`` (``cfg.quant``).
    Returns the ``QuantSpikingNet`` and metrics; every argument is checked before training, and
    (``check_fit``) that the network fits one chip of the profile at its bit-widths."""
    from neurokd.models.cuba.quantized import check_bits
    from neurokd.quant.methods import QAT_METHODS
    from neurokd.quant.qat import layer_bits, quantize_snn

    if snn.quantized:  # a sigma-delta network is trained on the grid where it is made
        raise NeurokdError("this SNN checkpoint is already quantized; " + (
            "sigma-delta networks train on the 8-bit grid in convert or train-snn --neuron sdnn"
            if snn.family == "sdnn" else "give the full-precision one"))
    profile = load_profile(cfg.hardware)
    bits = layer_bits(cfg.quant, snn.spec.num_spiking_layers)
    check_bits(bits, profile)
    if check_fit:
        check_fit_chip(snn.spec, profile, bits)
    reference = None
    if kd_from is not None:
        if not QAT_METHODS.get(cfg.quant.method).distilled:
            distilled = [m for m in QAT_METHODS.names() if QAT_METHODS.get(m).distilled]
            raise NeurokdError(f"--kd-from is used by method {', '.join(distilled)}, not "
                               f"{cfg.quant.method}")
        reference = kd_reference(kd_from, ds, meta, bits)
    prepare = make_prepare(meta["encoder"], meta["timesteps"], snn.window_pad)
    model, metrics = quantize_snn(snn, ds, prepare, cfg.quant, seed=cfg.seed, reference=reference,
                                  profile=profile, progress=progress, log=log,
                                  encoder=meta["encoder"], timesteps=meta["timesteps"],
                                  device=cfg.device)
    metrics["hardware"] = profile.name
    metrics["float_weight_bytes"] = 4 * sum(int(w.numel()) for w in model.weights)
    return model, metrics


# ---------------------------------------------------------------- DNN → SNN conversion
def convert(cfg: RunConfig, ds: Dataset, teacher: str | Path | TeacherRef, progress: bool = True,
            log: Log = quiet, check_fit: bool = True):
    """Convert the DNN ``teacher`` (a neurokd checkpoint, an ONNX file or a ``module:factory``,
    see ``neurokd.interop.teachers``) for ``cfg.student.timesteps`` steps (``cfg.convert``).
    Returns the integer IF network and metrics (``teacher_source``: where the DNN came from);
    with ``check_fit``, a network that would not fit one chip of the profile is refused before
    any work."""
    from neurokd.interop.teachers import load_dnn
    from neurokd.convert.dnn import convert_dnn, dnn_stages, stages_spec

    model, source = load_dnn(teacher, ds.input_shape, ds.num_classes)
    if check_fit:
        check_fit_chip(stages_spec(dnn_stages(model.eval(), ds.input_shape), ds.input_shape),
                       load_profile(cfg.hardware), cfg.convert.bits)
    snn, metrics = convert_dnn(model, ds, cfg.student.timesteps, cfg.convert, load_profile(cfg.hardware),
                               cfg.student.encoder, seed=cfg.seed, progress=progress, log=log,
                               device=cfg.device)
    metrics["hardware"] = cfg.hardware
    metrics["teacher_source"] = source
    return snn, metrics


# ---------------------------------------------------------------- export and Lava
def export_snn(model: SpikingNet, path: str | Path, meta: Dict[str, Any], ds: Optional[Dataset] = None,
               log: Log = quiet, replace: bool = True, check_fit: bool = True) -> Path:
    """Export to netx. With ``check_fit``, refuses a network that does not fit one chip of its
    profile (``neurokd.metrics.resources.fit_violation``). Reports each layer's state against the
    chip's state bits: the worst case over every admissible input (``state_bound``) and, with
    data, the extremes measured on the first test samples; warns where either passes the limit."""
    from neurokd.deploy.export import export_netx
    from neurokd.metrics.activity import weight_bits

    if model.family == "sdnn":  # its own writer; verify measures its messages against the limits
        return export_netx(model, path, meta, replace=replace)
    if check_fit:
        check_fit_chip(model.spec, model.profile, weight_bits(model))
    emulated = model.quantized  # a quantized network wraps and clips as Lava does
    # The remedy for a network from `neurokd quantize` (a converted one has biases).
    remedy = emulated and not model.has_bias
    profile = model.profile
    measured: Dict[int, Dict[str, Any]] = {}
    if ds is not None:
        prepare = make_prepare(meta["encoder"], meta["timesteps"], model.window_pad)
        xb, _ = next(encoded_batches(ds.test, prepare, seed=0))
        for row in model.state_extremes(xb):
            measured[row["layer"]] = row
            if row["overflow"]:
                consequence = ("Lava wraps or clips it exactly as the quantized model did, which "
                               "changes the network's behaviour" if emulated else
                               "Lava will wrap or clip it and may differ from PyTorch")
                log(f"warning: layer {row['layer']} reaches |u| = {row['max_abs_current']}, "
                    f"|v| = {row['max_abs_voltage']}, beyond the {profile.state_bits}-bit "
                    f"state of {profile.name}: {consequence}"
                    + ("; 'neurokd quantize --fit-state measured' keeps it inside by coarsening "
                       "the layer's weight step (fewer weight levels)" if remedy else ""))
    for row in model.state_bound(meta["encoder"], meta["timesteps"]):
        seen = measured.get(row["layer"])
        where = (f"measured on {len(xb)} test samples |u| = {seen['max_abs_current']}, "
                 f"|v| = {seen['max_abs_voltage']}; " if seen else "")
        log(f"state of layer {row['layer']}: {where}worst case over admissible inputs "
            f"|u| <= {row['max_abs_current']}, |v| <= {row['max_abs_voltage']} "
            f"({profile.state_bits}-bit limit {profile.state_limit})")
        if row["overflow"] and not (seen and seen["overflow"]):
            what = [name for name, key in (("wrap the current", "max_abs_current"),
                                           ("clip the voltage", "max_abs_voltage"))
                    if row[key] > profile.state_limit]
            consequence = ("the quantized model wraps and clips as Lava does, so the two still "
                           "agree" if emulated else "Lava may then differ from PyTorch")
            # The step factor fit_state 'bound' needs at its default state_target of 0.75.
            factor = max(row["max_abs_current"], row["max_abs_voltage"]) / (0.75 * profile.state_limit)
            log(f"warning: layer {row['layer']}: some admissible input can {' and '.join(what)} "
                f"in Lava (worst case |u| = {row['max_abs_current']}, |v| = "
                f"{row['max_abs_voltage']}, beyond the {profile.state_bits}-bit state of "
                f"{profile.name}{', though the test samples stay within it' if seen else ''}): "
                f"{consequence}"
                + ("; 'neurokd quantize --fit-state bound' keeps every input inside by coarsening "
                   f"the layer's weight step about ×{factor:.1f} ({math.log2(factor):.1f} bits "
                   "of weight precision)" if remedy else ""))
    net, meta = (model.to_slayer(), dict(meta, quant=model.arch()["quant"])) if emulated else (model, meta)
    return export_netx(net, path, meta, replace=replace)


def config_from_meta(meta: Dict[str, Any], data_dir: Optional[str] = None,
                     where: str | Path = "checkpoint") -> RunConfig:
    """The run configuration saved in a checkpoint's or network's metadata, checked like a file's."""
    from pydantic import ValidationError

    from neurokd.schema import format_validation_error

    tree = meta.get("config") if isinstance(meta, dict) else None
    if not isinstance(tree, dict):
        raise NeurokdError(f"{where}: metadata lacks its run configuration")
    try:
        cfg = RunConfig(**{**tree, "device": "auto"})  # where it ran is not where this runs
        if data_dir is not None:
            cfg.data.data_dir = data_dir
    except ValidationError as exc:
        raise NeurokdError(f"{where}: configuration in the metadata: "
                           f"{format_validation_error(exc)}") from None
    try:
        check_names(cfg)
    except NeurokdError as exc:
        raise NeurokdError(f"{where}: configuration in the metadata: {exc}") from None
    return cfg


# ---------------------------------------------------------------- radio results
def is_radio(ds: Dataset) -> bool:
    """True for data whose test frames carry an SNR (the radio datasets): results per SNR."""
    return ds.test.snr is not None


def train_candidates(cands: Sequence[Any], ds: Dataset, cfg: RunConfig, timesteps: int,
                     epochs: int, spec_dir: str | Path, progress: bool = False,
                     log: Log = quiet) -> List[Dict[str, Any]]:
    """Train each of the search's ``cands`` (best first) for at most ``epochs`` epochs as
    :func:`train_snn` does (``timesteps`` steps; sigma-delta: ``convert.sdnn.train_student``),
    specs written to ``spec_dir/rank<i>.yaml``. One record each: proxy rank, validation (best
    epoch: the one to choose by) and test accuracy, cores, synapses, synops per inference (the
    upper bound, and measured after training on the validation split, sigma-delta on the test
    split from rest), seconds of training and measurement (``train_seconds``)."""
    import time

    from neurokd.config import build_config
    from neurokd.models.spec import save_spec
    from neurokd.nas.search import describe

    if epochs <= 0:
        raise NeurokdError(f"--train-epochs must be positive, got {epochs}")
    base = config_to_dict(cfg)
    spec_dir = Path(spec_dir)
    spec_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for rank, c in enumerate(cands, 1):
        path = save_spec(spec_dir / f"rank{rank}.yaml", c.spec, timesteps=timesteps,
                         encoder=cfg.student.encoder)
        run_cfg = build_config(base=base, values={"student.spec": str(path),
                                                  "student.timesteps": timesteps,
                                                  "student.epochs": epochs})
        log(f"train-top: {rank}/{len(cands)} {describe(c.spec)} ({c.resources['cores']} cores, "
            f"{epochs} epochs at most)")
        t0 = time.perf_counter()
        if c.spec.family == "sdnn":
            from neurokd.convert.sdnn import train_student
            model, metrics = train_student(run_cfg, ds, c.spec, progress=progress, log=log)
            ops = metrics["synops_per_inference"]
        else:
            from neurokd.metrics.activity import split_synops
            model, metrics = train_snn(run_cfg, ds, progress=progress, log=log)
            ops = split_synops(model, ds.val, cfg.student.encoder, timesteps, cfg.seed)
        out.append({"rank": rank, "arch": describe(c.spec), "spec_file": f"{spec_dir.name}/{path.name}",
                    "val_accuracy": float(metrics["snn_val_accuracy"]),
                    "test_accuracy": float(metrics["snn_accuracy"]),
                    "train_epochs": int(metrics["snn_epochs"]), "cores": c.resources["cores"],
                    "synapses": c.resources["synapses"], "synops_upper": c.resources["synops"],
                    "synops_trained": ops, "train_seconds": time.perf_counter() - t0})
    return out


def import_nir(path: str | Path, cfg: RunConfig, ds: Dataset, dt: Optional[float] = None,
               log: Log = quiet) -> Tuple[nn.Module, Dict[str, Any], Dict[str, Any]]:
    """Import the NIR graph at ``path`` for the data ``ds`` and run configuration ``cfg``
    (``student.timesteps`` and ``student.encoder``: the window the graph's network reads).
    Returns the float ``SpikingNet``, its checkpoint metadata (:func:`snn_meta` plus a
    ``nir`` record) and metrics: test accuracy of the graph as written (``nir_reference_accuracy``,
    float64 Euler steps, biases included), of the imported float model as ``train-snn`` evaluates
    it (``snn_accuracy``) and without slayer's weight rounding (``float_unrounded_accuracy``),
    and their output spike and prediction agreement. Every approximation is logged. ``dt``:
    the time step the graph's time constants are read with (default ``nir_io.DEFAULT_DT``)."""
    from neurokd.interop.nir import (DEFAULT_DT, approximation_lines, chain_to_snn,
                                       nir_input_window, parse_chain, read_graph, simulate_chain,
                                       spike_agreement)
    from neurokd.quant.qat import full_precision

    dt = DEFAULT_DT if dt is None else dt
    seed_everything(cfg.seed)
    graph = read_graph(path)
    chain = parse_chain(graph, dt, where=str(path))
    result = chain_to_snn(chain, load_profile(cfg.hardware), ds.input_shape)
    model = result.model
    try:
        model.spec.check_task(ds.num_classes, ds.input_shape)
    except NeurokdError as exc:
        raise NeurokdError(f"{path}: the graph does not fit {ds.name}: {exc}") from None
    check_memory(cfg, ds, model.spec)  # before the graph is run on the test set
    for line in approximation_lines(result.approximations):
        log(line)
    s = cfg.student
    prepare = make_prepare(s.encoder, s.timesteps, model.window_pad)
    snn_acc = accuracy(model, ds.test, prepare, spike_counts, seed=cfg.seed)
    fp = full_precision(model, [8] * model.spec.num_spiking_layers)
    fp_acc = accuracy(fp, ds.test, prepare, spike_counts, seed=cfg.seed)
    ref_correct = 0
    bins = agree = 0.0
    total = 0
    with torch.no_grad():
        for xb, yb in encoded_batches(ds.test, prepare, seed=cfg.seed):
            x_nir, lag = nir_input_window(model, xb)
            ref = simulate_chain(chain, x_nir)
            mine = model(xb)
            ref_correct += int((ref[..., :s.timesteps].sum(-1).argmax(1).numpy() == yb).sum())
            m = spike_agreement(mine, ref, lag)
            bins += m["spike_match"] * len(yb)
            agree += m["prediction_agreement"] * len(yb)
            total += len(yb)
    metrics = {
        "nir_reference_accuracy": ref_correct / total,
        "snn_accuracy": snn_acc,
        "float_unrounded_accuracy": fp_acc,
        "import_spike_match": bins / total,
        "import_prediction_agreement": agree / total,
        "dt": float(dt), "threshold": float(model.spec.neuron.threshold),
        "current_decay": model.chip_decays()[0],
        "voltage_decay": model.chip_decays()[1],
        "layers": result.layers,
        "approximations": result.approximations,
        "nir_nodes": chain.node_types,
        "source": str(path),
    }
    meta = snn_meta(cfg, ds)
    meta["nir"] = {"source": str(path), "dt": float(dt), "approximations": result.approximations}
    return model, meta, metrics
