import pytest

from neurokd.errors import NeurokdError
from neurokd.hardware import available_profiles, load_profile
from neurokd.models.spec import default_spec, load_spec, spec_from_dict

CONV = {"input_shape": [1, 8, 8], "layers": [
    {"type": "conv", "channels": 4, "kernel": 3, "stride": 2, "padding": 1},
    {"type": "flatten"}, {"type": "dense", "units": 10}]}


def test_spec_shapes_and_round_trip(tmp_path):
    spec = spec_from_dict(CONV)
    assert spec.shapes() == [(4, 4, 4), (64,), (10,)]
    assert spec.num_spiking_layers == 2
    import yaml

    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(spec.model_dump()))
    assert load_spec(f) == spec


def test_a_spec_file_records_the_settings_it_was_searched_with(tmp_path):
    """timesteps and encoder travel with the architecture; files without them load as before;
    the run configuration takes them unless it sets its own, and then says so."""
    import yaml

    from neurokd.config import build_config
    from neurokd.models.spec import read_spec_file, save_spec, spec_settings

    spec = spec_from_dict(CONV)
    searched = save_spec(tmp_path / "searched.yaml", spec, timesteps=16, encoder="direct")
    assert yaml.safe_load(searched.read_text())["timesteps"] == 16
    assert read_spec_file(searched) == (spec, {"timesteps": 16, "encoder": "direct"})
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump(spec.model_dump()))
    assert load_spec(old) == spec and spec_settings(old) == {}

    notes = []
    cfg = build_config(values={"student.spec": str(searched)}, log=notes.append)
    assert (cfg.student.timesteps, cfg.student.encoder, notes) == (16, "direct", [])
    assert build_config(values={"student.spec": str(old)}).student.timesteps == 24  # the default
    cfg = build_config(overrides=[f"student.spec={searched}", "student.timesteps=8"], log=notes.append)
    assert (cfg.student.timesteps, cfg.student.encoder) == (8, "direct")
    assert notes == [f"note: {searched} was searched with student.timesteps = 16; this run uses 8, "
                     "as set explicitly"]
    config = tmp_path / "c.yaml"
    config.write_text(f"student:\n  spec: {searched}\n  encoder: rate\n")
    notes.clear()
    cfg = build_config(config, log=notes.append)
    assert (cfg.student.timesteps, cfg.student.encoder) == (16, "rate") and len(notes) == 1
    # a run's saved configuration is already resolved: the spec file is not read again
    assert build_config(base={"student": {"spec": str(tmp_path / "gone.yaml")}}).student.timesteps == 24


@pytest.mark.parametrize("extra, message", [("timesteps: 0", "timesteps: Input should be greater than 0"),
                                            ("timesteps: true", "timesteps"),
                                            ("encoder: ''", "encoder"),
                                            ("window: 3", "window: unknown key")])
def test_bad_spec_settings_get_one_line(tmp_path, extra, message):
    import yaml

    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(CONV) + extra + "\n")
    with pytest.raises(NeurokdError, match=message) as err:
        load_spec(f)
    assert "\n" not in str(err.value) and str(f) in str(err.value)


@pytest.mark.parametrize("data, message", [
    ({"input_shape": [64], "layers": [{"type": "conv", "channels": 2, "kernel": 3}]}, "needs a \\(C, H, W\\)"),
    ({"input_shape": [1, 4, 4], "layers": [{"type": "conv", "channels": 2, "kernel": 9}]}, "does not fit"),
    ({"input_shape": [1, 8, 8], "layers": [{"type": "conv", "channels": 2, "kernel": 3},
                                            {"type": "dense", "units": 3}]}, "flatten"),
    ({"input_shape": [1, 8, 8], "layers": [{"type": "pool", "kernel": 2}]}, "layers.0"),
    ({"input_shape": [64], "layers": [{"type": "dense", "units": -5}]}, "greater than 0"),
    ({"input_shape": [64], "layers": []}, "layers"),
    ({"input_shape": [64], "layers": [{"type": "dense", "units": 5, "bias": True}]}, "unknown key"),
    ([1, 2], "mapping"),
])
def test_bad_specs_are_refused(data, message):
    with pytest.raises(NeurokdError, match=message):
        spec_from_dict(data)


def test_check_task():
    spec = default_spec((1, 8, 8), 10, 16)
    spec.check_task(10, (1, 8, 8))
    with pytest.raises(NeurokdError, match="5 units"):
        spec.check_task(5, (1, 8, 8))
    with pytest.raises(NeurokdError, match="input_shape"):
        spec.check_task(10, (1, 28, 28))


def test_loihi2_profile_matches_slayer_and_lava_constants():
    from neurokd.models.cuba.net import _slayer

    p = load_profile("loihi2")
    assert "loihi2" in available_profiles()
    neuron = _slayer().neuron.cuba.Neuron(threshold=1.0, current_decay=0.1, voltage_decay=0.1)
    assert neuron.w_scale == p.weight_scale == 64
    assert neuron.s_scale == p.state_scale == 4096
    assert neuron.p_scale == p.decay_scale == 4096
    assert p.state_limit == 2**23 - 1


def test_profile_errors(tmp_path):
    with pytest.raises(NeurokdError, match="unknown hardware profile"):
        load_profile("loihi9")
    f = tmp_path / "p.yaml"
    f.write_text("name: x\nweight_bits: 8\n")
    with pytest.raises(NeurokdError, match="Field required"):
        load_profile(str(f))
