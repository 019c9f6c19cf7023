"""Which test samples the Lava check runs: the first ones, or for radio data every SNR."""

import numpy as np

from neurokd.data.datasets import Split
from neurokd.deploy.verify import lava_frames
from neurokd.training import make_prepare


def _split(with_snr: bool) -> Split:
    n = 120
    x = (np.arange(n, dtype=np.float32)[:, None, None, None] / n).repeat(2, axis=1)
    snr = np.repeat(np.array([0.0, 10.0, 20.0], dtype=np.float32), n // 3) if with_snr else None
    return Split(x, np.arange(n, dtype=np.int64), snr=snr)


def test_radio_checks_samples_spread_over_every_snr_and_others_the_first():
    prepare = make_prepare("direct8", 3, 1)
    frames, labels = lava_frames(prepare, _split(True), 9, seed=0)
    assert labels.tolist() == np.linspace(0, 119, 9).round().astype(int).tolist()
    assert len(set(np.repeat([0, 10, 20], 40)[labels])) == 3  # every SNR is run
    assert frames.shape == (9, 2, 1, 1, 4)
    # the frames are those samples' windows, encoded as accuracy encodes them
    assert np.allclose(frames[:, 0, 0, 0, 0].numpy(), np.round(labels / 120 * 255))
    _, first = lava_frames(prepare, _split(False), 9, seed=0)
    assert first.tolist() == list(range(9))
    _, whole = lava_frames(prepare, _split(True), 500, seed=0)
    assert whole.tolist() == list(range(120))
