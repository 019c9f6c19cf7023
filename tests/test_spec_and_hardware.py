import pytest

from neurokd.errors import NeurokdError
from neurokd.hardware import available_profiles, load_profile
from neurokd.models.spec import ArchSpec, default_spec, load_spec, spec_from_dict

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
    from neurokd.models.snn import _slayer

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
