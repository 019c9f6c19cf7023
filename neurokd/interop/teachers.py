"""Bring your own DNN: teachers trained elsewhere, as an ONNX file or a PyTorch ``module:factory``.

A teacher is named by one string (``--teacher``):

* a neurokd teacher checkpoint (``teacher.pt``), as ``neurokd train-teacher`` writes it;
* an ONNX file (``*.onnx``). Its graph is read with the ``onnx`` package (nothing in the file is
  executed; external weight files must lie inside the model's folder) and mapped, node by node,
  onto the torch layers that conversion reads (see ``SUPPORTED_OPS``), as an ``nn.Sequential``
  whose weights are the graph's initializers. Any other operator is refused by name;
* ``module:factory``: the module is imported (running its code: this is the user's choice) and
  ``factory(**kwargs)`` builds the ``nn.Module``; its weights come from a state_dict file
  (``--teacher-weights``), read with ``torch.load(weights_only=True)`` after the same archive
  check as neurokd checkpoints, and loaded with ``strict=True``.

Every teacher is checked against the data (input shape, class count) before any work starts, and
carries a ``neurokd_source`` record (kind, path or factory, SHA-256 of the files) for the run's
metrics.

What a teacher holds is checked before it is used, each problem refused with one line naming the
file and the tensor, node or layer: an ONNX tensor's type, shape and stored bytes before its
values are read (and the whole file and its external data against the memory this machine can
spare); NaN or infinite values anywhere in a teacher's parameters and buffers, in a weights file,
in a graph's attributes (Gemm's ``alpha``, BatchNormalization's ``epsilon``) or in what mapping
computes from them; strides, kernels, padding and shape arithmetic that make no sense; and
activations too large to hold, computed from the layers' shapes before anything runs the model.
A weights file is read and checked before the user's module is imported, and an attempt of the
user's code to exit the process (``sys.exit``) is refused like any other failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import pickle
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import torch
from torch import nn

from neurokd.errors import NeurokdError
from neurokd.interop.onnx import onnx_teacher
from neurokd.models.dnn_checks import (check_activations, check_finite, first_line as _first_line,
                                      nonfinite)

_FACTORY = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)")
# Samples that the probe of a teacher (``check_fits``) runs at once.
PROBE_SAMPLES = 2


# ---------------------------------------------------------------- what the user names
@dataclass
class TeacherRef:
    """A teacher as the user names it: ``ref`` (checkpoint, ``.onnx`` file or ``module:factory``),
    the state_dict file ``weights``, the factory's keyword arguments ``kwargs``, and the folder
    ``search_path`` put first on ``sys.path`` while a factory's module is imported."""

    ref: str
    weights: Optional[str] = None
    kwargs: Dict[str, Any] = field(default_factory=dict)
    search_path: Optional[str] = None

    @property
    def kind(self) -> str:
        return teacher_kind(self.ref)


def teacher_kind(ref: str | Path) -> str:
    """``"onnx"`` for a ``*.onnx`` path, ``"factory"`` for ``module:factory`` (when no such file
    exists), else ``"checkpoint"``."""
    text = str(ref)
    if text.lower().endswith(".onnx"):
        return "onnx"
    if _FACTORY.fullmatch(text) and not Path(text).exists():
        return "factory"
    return "checkpoint"


def parse_kwargs(text: Optional[str]) -> Dict[str, Any]:
    """The factory's keyword arguments from a YAML or JSON mapping (read with ``safe_load``)."""
    import yaml

    if text is None:
        return {}
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise NeurokdError(f"--teacher-kwargs {text!r}: not a YAML or JSON mapping") from None
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and k.isidentifier() for k in value):
        raise NeurokdError(f"--teacher-kwargs {text!r}: expected a mapping of argument names to "
                           "values, e.g. '{hidden: 64, classes: 10}'")
    return value


def teacher_ref(ref: str | Path, weights: Optional[str | Path] = None,
                kwargs: Optional[Dict[str, Any]] = None, search_path: Optional[str] = None
                ) -> TeacherRef:
    """Check that the options go together (weights for ONNX or a factory, kwargs for a factory)."""
    out = TeacherRef(str(ref), None if weights is None else str(weights), dict(kwargs or {}),
                     search_path)
    kind = out.kind
    if kind == "checkpoint" and weights is not None:
        raise NeurokdError(f"{ref}: --teacher-weights goes with an ONNX or module:factory teacher; "
                           "a neurokd checkpoint holds its own weights")
    if kind != "factory" and out.kwargs:
        raise NeurokdError(f"{ref}: --teacher-kwargs goes with a module:factory teacher")
    if kind == "factory" and weights is None:
        raise NeurokdError(f"{ref}: a module:factory teacher needs its trained weights "
                           "(--teacher-weights FILE, a state_dict saved with torch.save)")
    return out


def as_ref(teacher: str | Path | TeacherRef) -> TeacherRef:
    return teacher if isinstance(teacher, TeacherRef) else teacher_ref(teacher)


def is_foreign(model: nn.Module) -> bool:
    """Whether ``model`` came from an ONNX file or a factory (not a neurokd checkpoint)."""
    return (getattr(model, "neurokd_source", None) or {}).get("kind") in ("onnx", "factory")


def source_label(source: Dict[str, Any]) -> str:
    """A short name for tables and plots: the file, or the factory."""
    if source.get("kind") == "factory":
        return str(source["factory"])
    return Path(str(source.get("path", "teacher"))).name




def _sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _user_code(ref: str, what: str) -> Iterator[None]:
    """Run the user's code (``what``: importing it, calling it): an attempt to end the process
    (``sys.exit``) or any other exception that is not an interruption becomes one line."""
    try:
        yield
    except NeurokdError:
        raise
    except SystemExit as exc:
        code = exc.code if exc.code is not None else 0
        raise NeurokdError(f"{ref}: {what} tried to exit the process (sys.exit with code "
                           f"{code!r})") from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # the user's code, whatever it raises
        raise NeurokdError(f"{ref}: {what} failed ({_first_line(exc)})") from None


# ---------------------------------------------------------------- any teacher, checked
def load_dnn(teacher: str | Path | TeacherRef, input_shape: Sequence[int], num_classes: int,
             convertible: bool = True) -> Tuple[nn.Module, Dict[str, Any]]:
    """The teacher in evaluation mode and the record of where it came from, checked against the
    data's ``input_shape`` and ``num_classes``. ``convertible=False``: the teacher stays a DNN
    (distillation, ``report --teacher``, ``quantize --kd-from``), so an ONNX graph conversion
    cannot map is read whole (``neurokd.interop.onnx.onnx_teacher``).

    A weights file is read and checked (archive, tensors, finite values) before anything of the
    user's is imported or called; every teacher's parameters and buffers must be finite; and a
    model whose activations could not be held is refused from its layers' shapes before the
    probe runs it (see :func:`check_activations`)."""
    from neurokd.models.teachers import check_teacher_fits
    from neurokd.models.checkpoint import load_checkpoint
    from neurokd.models.teachers import teacher_from_checkpoint

    ref = as_ref(teacher)
    kind, where = ref.kind, ref.ref
    if kind == "checkpoint":
        payload = load_checkpoint(ref.ref, "teacher")
        check_teacher_fits(payload.get("arch", {}), num_classes, tuple(input_shape), where)
        model = teacher_from_checkpoint(payload, where=where)
        check_finite(model, where)
        source: Dict[str, Any] = {"kind": "checkpoint", "path": ref.ref, "sha256": _sha256(ref.ref)}
        model.neurokd_source = source
        return model, source
    state = read_state_dict(ref.weights) if ref.weights is not None else None
    if kind == "onnx":
        model = onnx_teacher(ref.ref, input_shape, convertible)
        source = {"kind": "onnx", "path": ref.ref, "sha256": _sha256(ref.ref),
                  "reader": "onnx2torch" if hasattr(model, "neurokd_unconvertible") else "neurokd"}
    else:
        model = factory_teacher(ref.ref, ref.kwargs, ref.search_path)
        source = {"kind": "factory", "factory": ref.ref, "kwargs": dict(ref.kwargs)}
    if ref.weights is not None:
        load_weights(model, ref.weights, where, state)
        source.update(weights=ref.weights, weights_sha256=_sha256(ref.weights))
    check_finite(model, where)
    check_activations(model, input_shape, PROBE_SAMPLES, where, "the probe of the teacher")
    check_fits(model, input_shape, num_classes, where)
    model.neurokd_source = source
    return model.eval(), source


def check_fits(model: nn.Module, input_shape: Sequence[int], num_classes: int, where: str) -> None:
    """Run two zero samples of the data's shape through ``model``: it must take them and give
    ``num_classes`` finite logits per sample."""
    model.eval()
    try:
        with torch.no_grad():
            y = model(torch.zeros(PROBE_SAMPLES, *input_shape))
    except SystemExit as exc:
        code = exc.code if exc.code is not None else 0
        raise NeurokdError(f"{where}: the teacher's forward pass tried to exit the process "
                           f"(sys.exit with code {code!r})") from None
    except (KeyboardInterrupt, NeurokdError):
        raise
    except BaseException as exc:  # the user's model, whatever it raises
        raise NeurokdError(f"{where}: the teacher cannot take the data's input "
                           f"{list(input_shape)} ({_first_line(exc)})") from None
    if not isinstance(y, torch.Tensor):
        raise NeurokdError(f"{where}: the teacher returns a {type(y).__name__}, not a tensor of "
                           "class logits")
    if tuple(y.shape) != (PROBE_SAMPLES, num_classes):
        raise NeurokdError(f"{where}: the teacher gives outputs of shape {list(y.shape[1:])} per "
                           f"sample; the data has {num_classes} classes")
    if not bool(torch.isfinite(y).all()):
        raise NeurokdError(f"{where}: the teacher gives NaN or infinite logits for an all-zero "
                           "input; its weights overflow")


# ---------------------------------------------------------------- state_dict files
def read_state_dict(path: str | Path) -> Dict[str, torch.Tensor]:
    """A state_dict saved with ``torch.save`` (or a dict holding one under ``state_dict`` or
    ``model_state_dict``), read without unpickling anything but tensors and containers."""
    from neurokd.models.checkpoint import check_archive

    p = Path(path)
    if not p.is_file():
        raise NeurokdError(f"{p}: no such weights file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise NeurokdError(f"{p}: cannot read ({exc.strerror})") from None
    check_archive(data, p, what="state_dict file saved with torch.save")
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, OSError,
            ValueError, AttributeError, KeyError, TypeError):
        raise NeurokdError(f"{p}: not a readable state_dict (unreadable or unsafe content)") from None
    if isinstance(payload, dict) and not all(isinstance(v, torch.Tensor) for v in payload.values()):
        for key in ("state_dict", "model_state_dict"):
            if isinstance(payload.get(key), dict):
                payload = payload[key]
                break
    if not isinstance(payload, dict) or not payload:
        raise NeurokdError(f"{p}: holds no state_dict (a mapping of parameter names to tensors)")
    bad = [k for k, v in payload.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise NeurokdError(f"{p}: state_dict entry {bad[0]!r} is not a named tensor")
    name = nonfinite(iter(payload.items()))
    if name is not None:
        raise NeurokdError(f"{p}: state_dict entry {name!r} holds NaN or infinite values; a "
                           "teacher's weights must be finite")
    return dict(payload)


def _listed(names: Sequence[str], most: int = 4) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def load_weights(model: nn.Module, path: str | Path, where: str,
                 state: Optional[Dict[str, torch.Tensor]] = None) -> None:
    """``model.load_state_dict(read_state_dict(path), strict=True)`` (``state``: the file's
    state_dict, already read); a mismatch is one line naming the missing and unexpected keys and
    the first shapes that differ."""
    if state is None:
        state = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} is {list(state[k].shape)} in the file, {list(own[k].shape)} in the model"
              for k in own if k in state and state[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_listed(unexpected)}")
    if shapes:
        problems.append(f"shapes differ: {_listed(shapes, 2)}")
    if problems:
        raise NeurokdError(f"{path}: the weights do not fit {where} ({'; '.join(problems)})")
    with _user_code(where, "loading the weights into the model"):  # it may override loading
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise NeurokdError(f"{path}: the weights do not fit {where} "
                               f"({_first_line(exc)})") from None


def save_weights(path: str | Path, model: nn.Module) -> Path:
    """Write ``model``'s state_dict (plain tensors, atomically): the weights of a co-learned
    teacher that came from an ONNX file or a factory, for ``--teacher-weights``."""
    from neurokd.fileio import atomic_path

    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


# ---------------------------------------------------------------- module:factory
@contextlib.contextmanager
def _first_on_path(folder: Optional[str]) -> Iterator[None]:
    if folder is None:
        yield
        return
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)


def factory_teacher(ref: str, kwargs: Optional[Dict[str, Any]] = None,
                    search_path: Optional[str] = None) -> nn.Module:
    """Import ``module`` of ``module:factory`` (this runs the module's code) and call
    ``factory(**kwargs)``; the result must be an ``nn.Module``. Whatever the module or the
    factory raises, an attempt to exit the process (``sys.exit``) included, is one line; only an
    interruption (Ctrl-C, a signal) goes through."""
    match = _FACTORY.fullmatch(ref)
    if match is None:
        raise NeurokdError(f"{ref!r}: expected module:factory, e.g. mypkg.models:make_net")
    module_name, attr_path = match.groups()
    with _first_on_path(search_path), _user_code(ref, f"importing {module_name}"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name) and (
                    exc.name == module_name or module_name[len(exc.name)] == "."):
                raise NeurokdError(f"{ref}: no module named {module_name!r} (run from its folder "
                                   "or put it on PYTHONPATH)") from None
            raise
    target: Any = module
    with _user_code(ref, f"looking up {attr_path}"):
        for part in attr_path.split("."):
            if not hasattr(target, part):
                raise NeurokdError(f"{ref}: {module_name} has no attribute {attr_path!r}")
            target = getattr(target, part)
        if not callable(target):
            raise NeurokdError(f"{ref}: {attr_path} is a {type(target).__name__}, not a callable "
                               "factory")
    with _user_code(ref, f"calling {attr_path}()"):
        model = target(**(kwargs or {}))
        if not isinstance(model, nn.Module):
            raise NeurokdError(f"{ref}: {attr_path}() returned a {type(model).__name__}, not a "
                               "torch.nn.Module")
        return model.float().eval()


