import pytest

from neurokd.config import RunConfig, build_config, config_to_dict, parse_override
from neurokd.errors import NeurokdError


def test_defaults_file_flags_and_overrides_layer_in_order(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("seed: 5\nteacher:\n  epochs: 7\nstudent:\n  timesteps: 12\n")
    cfg = build_config(f, ["student.timesteps=20", "teacher.hidden=[64, 32]"], {"seed": 9, "data.dataset": None})
    assert cfg.seed == 9 and cfg.teacher.epochs == 7 and cfg.student.timesteps == 20
    assert cfg.teacher.hidden == [64, 32]
    assert cfg.data.dataset == "digits"  # a None flag leaves the value alone
    assert build_config() == RunConfig()


@pytest.mark.parametrize("override, message", [
    (["student.timesteps=0"], "student.timesteps: Input should be greater than 0"),
    (["student.timesteps=-4"], "greater than 0"),
    (["teacher.hidden=[-3]"], "teacher.hidden.0"),
    (["teacher.bogus=1"], "teacher.bogus: unknown key"),
    (["bogus=1"], "bogus: unknown key"),
    (["lava.backend=gpu"], "lava.backend"),
    (["teacher.lr=fast"], "teacher.lr"),
    (["student.epochs"], "expected KEY=VALUE"),
])
def test_bad_values_get_one_line_naming_the_key(override, message):
    with pytest.raises(NeurokdError, match=message) as err:
        build_config(overrides=override)
    assert "\n" not in str(err.value)


def test_bad_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("teacher: [unclosed\n")
    with pytest.raises(NeurokdError, match="not valid YAML"):
        build_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(NeurokdError, match="mapping"):
        build_config(listy)
    with pytest.raises(NeurokdError, match="no such file"):
        build_config(tmp_path / "missing.yaml")


def test_yaml_tags_that_run_code_are_refused(tmp_path):
    f = tmp_path / "evil.yaml"
    f.write_text("seed: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(NeurokdError, match="not valid YAML"):
        build_config(f)


def test_override_values_are_parsed_as_yaml_scalars():
    assert parse_override("a.b=3") == ("a.b", 3)
    assert parse_override("a=[1, 2]") == ("a", [1, 2])
    assert parse_override("a=x=y") == ("a", "x=y")


def test_shipped_demo_config_is_valid():
    from tests.conftest import REPO

    cfg = build_config(REPO / "configs" / "demo.yaml")
    assert cfg == RunConfig()


def test_student_hidden_takes_one_width_or_a_list_of_layers():
    from neurokd.models.spec import DenseLayer, default_spec

    assert build_config(overrides=["student.hidden=[64, 32]"]).student.hidden == [64, 32]
    spec = default_spec((5, 1, 4), 4, [64, 32])
    assert [layer.units for layer in spec.layers if isinstance(layer, DenseLayer)] == [64, 32, 4]
    assert [layer.units for layer in default_spec((1, 8, 8), 10, 20).layers] == [20, 10]
    for bad in ("[]", "[0]", "true", "[8, -1]"):
        with pytest.raises(NeurokdError, match="student.hidden") as err:
            build_config(overrides=[f"student.hidden={bad}"])
        assert "\n" not in str(err.value)


def test_symbols_preset_trains_a_two_layer_student_on_graded_spikes():
    cfg = build_config(overrides=["data.dataset=symbols"])
    assert cfg.student.hidden == [128, 128] and cfg.student.encoder == "direct"
    assert build_config(overrides=["data.dataset=symbols", "student.hidden=64"]).student.hidden == 64


def test_a_config_file_applies_over_a_base_instead_of_replacing_it(tmp_path):
    base = config_to_dict(build_config(overrides=["student.hidden=48", "seed=7"]))
    path = tmp_path / "c.yaml"
    path.write_text("student:\n  epochs: 3\n")
    cfg = build_config(path, base=base)
    assert (cfg.student.epochs, cfg.student.hidden, cfg.seed) == (3, 48, 7)
