"""Registry walks the other test files do not make: every distillation loss, every search
strategy, every CLI command, and every flag whose choices mirror a configuration field."""

import argparse
from typing import get_args

import pytest
import torch

from neurokd import cli
from neurokd.config import RunConfig
from neurokd.distill.losses import LOSSES
from neurokd.nas.search import STRATEGIES


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_distillation_loss_gives_a_finite_scalar_that_trains(name):
    torch.manual_seed(0)
    student = torch.randn(8, 10, requires_grad=True)
    teacher = torch.randn(8, 10)
    target = torch.arange(8) % 10 if name == "ce" else teacher
    loss = LOSSES.get(name)(student, target)
    assert loss.dim() == 0 and torch.isfinite(loss) and float(loss) > 0
    loss.backward()
    assert torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0
    # the same student and teacher: nothing left to learn
    same = LOSSES.get(name)(teacher, target) if name != "ce" else None
    assert same is None or float(same) == pytest.approx(0.0, abs=1e-6)


def test_the_search_offers_exactly_its_registered_strategies():
    assert sorted(cli.SEARCH_STRATEGIES) == sorted(STRATEGIES)


@pytest.mark.parametrize("literal,registry", [
    ("SearchProxy", "neurokd.nas.proxies:PROXIES"),
    ("SearchStrategy", "neurokd.nas.search:STRATEGIES"),
    ("ExportFormat", "neurokd.runs:EXPORTERS"),
])
def test_each_named_configuration_type_equals_its_registry(literal, registry):
    import importlib

    from neurokd import config

    module, name = registry.split(":")
    reg = getattr(importlib.import_module(module), name)
    names = reg.names() if hasattr(reg, "names") else list(reg)
    assert sorted(get_args(getattr(config, literal))) == sorted(names)


@pytest.mark.parametrize("command,flag,literal", [
    ("search", "--proxy", "SearchProxy"),
    ("search", "--strategy", "SearchStrategy"),
    ("export", "--format", "ExportFormat"),
])
def test_flag_choices_are_the_named_configuration_types(command, flag, literal):
    from neurokd import config

    sub = _subparsers(cli.build_parser())[command]
    action = next(a for a in sub._actions if flag in a.option_strings)
    assert list(action.choices) == list(get_args(getattr(config, literal)))


def _subparsers(parser: argparse.ArgumentParser):
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_cli_command_has_a_parser_and_a_runner():
    parsers = _subparsers(cli.build_parser())
    assert set(parsers) == set(cli.COMMANDS)
    for name, sub in parsers.items():
        assert sub.format_help().startswith("usage: neurokd " + name), name
        assert callable(cli.COMMANDS[name])


@pytest.mark.parametrize("command,flag,section,field", [
    ("distill", "--method", "distill", "method"),
    ("quantize", "--method", "quant", "method"),
    ("quantize", "--fit-state", "quant", "fit_state"),
    ("convert", "--method", "convert", "method"),
    ("run-lava", "--backend", "lava", "backend"),
    ("demo", "--backend", "lava", "backend"),
])
def test_flag_choices_are_the_configuration_s_own(command, flag, section, field):
    sub = _subparsers(cli.build_parser())[command]
    action = next(a for a in sub._actions if flag in a.option_strings)
    model = RunConfig.model_fields[section].annotation
    assert list(action.choices) == list(get_args(model.model_fields[field].annotation))


def test_every_distillation_method_the_configuration_accepts_is_registered():
    from neurokd.config import DistillConfig
    from neurokd.distill.methods import DISTILL_METHODS

    accepted = sorted(get_args(DistillConfig.model_fields["method"].annotation))
    assert DISTILL_METHODS.names() == accepted
    for name in accepted:
        m = DISTILL_METHODS.get(name)
        assert m.name == name
        assert m.feature_loss in (None, *LOSSES.names())
        assert m.teacher or not (m.soft_targets or m.feature_loss or m.trains_teacher)


def test_what_each_distillation_method_switches_on():
    from neurokd.config import DistillConfig
    from neurokd.distill.colearn import teacher_trains, uses_features, uses_teacher

    def switches(method, **kw):
        cfg = DistillConfig(method=method, **kw)
        return uses_teacher(cfg), uses_features(cfg), teacher_trains(cfg)

    assert switches("none") == (False, False, False)
    assert switches("kd") == (True, False, False)
    assert switches("fitnet") == switches("relational") == (True, True, False)
    assert switches("ensemble") == (True, False, False)
    assert switches("colearn") == (True, True, True)
    assert switches("colearn", feature=False, freeze_teacher=True) == (True, False, False)


def test_every_quantization_method_the_configuration_accepts_is_registered():
    from neurokd.config import QuantConfig
    from neurokd.models.quantizers import QUANTIZERS
    from neurokd.quant.methods import QAT_METHODS

    accepted = sorted(get_args(QuantConfig.model_fields["method"].annotation))
    assert QAT_METHODS.names() == accepted
    for name in accepted:
        m = QAT_METHODS.get(name)
        assert m.quantizer in QUANTIZERS.names()
        assert m.trained or not (m.probabilistic or m.distilled)
    assert [n for n in accepted if not QAT_METHODS.get(n).trained] == ["ptq"]
    assert [n for n in accepted if QAT_METHODS.get(n).distilled] == ["lsq_prob_kd"]


def test_every_conversion_method_the_configuration_accepts_is_registered():
    from neurokd.config import ConvertConfig
    from neurokd.convert.methods import CONVERT_METHODS

    accepted = sorted(get_args(ConvertConfig.model_fields["method"].annotation))
    assert CONVERT_METHODS.names() == accepted
    for name in accepted:
        m = CONVERT_METHODS.get(name)
        assert m.name == name and m.clip in ("max", "percentile") and m.description
    assert [n for n in accepted if CONVERT_METHODS.get(n).fine_tuned] == ["qkd"]


def test_every_exporter_recognises_only_its_own_files(tmp_path):
    from neurokd.runs import EXPORTERS

    stranger = tmp_path / "notes.txt"
    stranger.write_text("not a network")
    for name in EXPORTERS.names():
        e = EXPORTERS.get(name)
        assert e.name == name and e.description and callable(e.write)
        assert e.ours(stranger) is False, name
