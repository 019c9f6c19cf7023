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
