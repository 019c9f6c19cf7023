"""The house's floors: no module imports anything above its own floor, function-level imports
included, so no package cycle can return. The floors are written down once, here, read bottom-up
as the flow: data → model → training → compress → export / deploy → runs → CLI."""

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "neurokd"

# Bottom to top. A module may import its own unit and anything on a lower floor; units that
# share a floor may not import each other.
FLOORS: Tuple[Tuple[str, ...], ...] = (
    ("__init__",),      # the version
    ("errors",),
    ("log",),
    ("registry",),
    ("fileio",),
    ("h5safe",),
    ("interrupts",),
    ("parallel",),      # tasks in worker processes, in this one, or on a Ray cluster
    ("runtime",),
    ("schema",),
    ("hardware",),
    ("plotting",),
    ("radio",),         # signals, channels, classical receivers, radio metrics
    ("data",),          # datasets, encoders, IDX, radio datasets
    ("models",),        # spec, teachers, checkpoints, neuron families
    ("training",),
    ("config",),
    ("metrics",),       # activity, resources, energy, radio reports, plots
    ("distill",),
    ("quant",),         # QAT
    ("convert",),       # DNN → SNN
    ("nas",),           # space, proxies, search (no training)
    ("interop",),
    ("deploy",),        # netx export, NIR, Lava run, verify
    ("pipeline",),      # the stages as library functions
    ("runs",),        # one recipe per command that writes a run directory
    ("cli",),
    ("__main__",),
)
FLOOR: Dict[str, int] = {unit: i for i, units in enumerate(FLOORS) for unit in units}


def unit_of(path: Path) -> str:
    """The unit a file of the package belongs to: its top-level module or package name."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_units(source: str) -> Iterator[Tuple[int, str]]:
    """(line, unit) for every neurokd import in ``source``, wherever it stands."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "neurokd":
                    yield node.lineno, parts[1] if len(parts) > 1 else "__init__"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] != "neurokd":
                continue
            if len(parts) > 1:
                yield node.lineno, parts[1]
            else:  # from neurokd import x: a module, or a name of the package itself
                for alias in node.names:
                    unit = alias.name if alias.name in FLOOR else "__init__"
                    yield node.lineno, unit


def violations(unit: str, source: str, where: str) -> List[str]:
    """Every import in ``source`` (of ``unit``) that points up a floor or sideways."""
    if unit not in FLOOR:
        return [f"{where}: unit {unit!r} has no floor in tests/test_layering.py"]
    out = []
    for line, target in imported_units(source):
        if target == unit:
            continue
        if target not in FLOOR:
            out.append(f"{where}:{line}: imports {target!r}, which has no floor")
        elif FLOOR[target] >= FLOOR[unit]:
            how = "up" if FLOOR[target] > FLOOR[unit] else "sideways"
            out.append(f"{where}:{line}: {unit} imports {target} ({how} a floor)")
    return out


def test_no_module_imports_above_its_floor():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += violations(unit_of(path), path.read_text(), str(path.relative_to(PACKAGE.parent)))
    assert found == []


def test_every_unit_of_the_package_has_a_floor():
    units = {unit_of(p) for p in PACKAGE.rglob("*.py")}
    assert units <= set(FLOOR), units - set(FLOOR)


@pytest.mark.parametrize("unit,source,expected", [
    # a function-level import up the stack, as the cycle hid itself
    ("models", "def f():\n    from neurokd.pipeline import train_snn\n",
     ["m.py:2: models imports pipeline (up a floor)"]),
    ("metrics", "import neurokd.nas.search\n", ["m.py:1: metrics imports nas (up a floor)"]),
    ("runs", "from neurokd import cli\n", ["m.py:1: runs imports cli (up a floor)"]),
    ("pipeline", "import neurokd.nothing\n", ["m.py:1: imports 'nothing', which has no floor"]),
    ("radio", "from neurokd import __version__\nfrom neurokd.errors import NeurokdError\n", []),
    ("deploy", "from neurokd.models.spec import ArchSpec\nfrom . import export\n", []),
])
def test_the_layering_check_catches_an_upward_import(unit, source, expected):
    assert violations(unit, source, "m.py") == expected
