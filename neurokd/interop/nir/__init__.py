"""NIR (the Neuromorphic Intermediate Representation) in and out.

**Import** (``neurokd import``): a NIR graph whose nodes form one feed-forward chain of
``Affine``/``Linear``, ``Conv2d``, ``Flatten`` and ``LIF``/``CubaLIF``/``IF`` nodes (as snntorch's
``export_to_nir`` writes them) becomes an ``ArchSpec`` and float weights: a slayer ``SpikingNet``
that ``neurokd quantize``, ``export`` and ``verify`` take like one from ``train-snn``.

**snntorch models** (``neurokd import --snntorch MODULE:FACTORY --weights FILE``): the module
itself, its scalar parameters broadcast per neuron so that snntorch's own ``export_to_nir``
writes its graph, then imported as above (:mod:`neurokd.interop.nir.snntorch_in`).

**Export** (``neurokd export --format nir``): any neurokd SNN (float ``SpikingNet`` or quantized
``QuantSpikingNet``) as a NIR graph that ``nir.read`` and snntorch's ``import_from_nir`` load.

The mapping. NIR's neurons are continuous in time; they are read as forward-Euler steps of
``dt`` (snntorch's convention, ``DEFAULT_DT``), with ``S`` the synapse's output (``W x + b``)::

    LIF      v[t] = (1 - dt/tau) v[t-1] + (dt/tau) (v_leak + R S[t])
    CubaLIF  I[t] = (1 - dt/tau_syn) I[t-1] + (dt/tau_syn) w_in S[t]
             v[t] = (1 - dt/tau_mem) v[t-1] + (dt/tau_mem) (v_leak + R I[t])
    IF       v[t] = v[t-1] + R S[t]        (one step: discrete-time producers write r = 1)
    all      s[t] = v[t] > v_threshold;  v[t] = v_reset where s[t]

Loihi's CUBA neuron, in slayer's float units (``neurokd.models.cuba.net``)::

    u[t] = (1 - du) u[t-1] + x[t];   v[t] = (1 - dv) v[t-1] + u[t];   s = v > θ;   v = 0 where s

So ``du = dt/tau_syn`` (1 for LIF and IF: the current is the input), ``dv = dt/tau_mem`` (0 for IF),
both rounded to the chip's 12-bit decays, and each neuron's input gain ``g`` (``R dt/tau``;
``R w_in dt² / (tau_syn tau_mem)``; ``R``) and threshold ``v_th`` are folded into its row of
weights: ``W'[i] = θ g[i] W[i] / v_th[i]``. With ``v_leak = v_reset = 0`` that is exact: scaling a
neuron's input and threshold alike does not change when it fires. ``θ``, one threshold for the
whole network, is chosen so that the largest weight fills slayer's 8-bit range.

What cannot be carried over exactly is said, node by node, in the ``approximations`` the import
returns (and the CLI logs and saves): Euler steps of ``dt``, decays rounded to 12 bits, biases
and ``v_leak`` dropped (neurokd's float students have no bias), ``v_reset`` taken as 0, slayer's
8-bit weight rounding of the float model. What it cannot map at all (another graph shape, another
node type, decays that differ between neurons, ...) is refused with one line naming the node.

Loihi delays each layer's output by one step (``SpikingNet.window_pad``); a NIR simulator has no
such delay, so neurokd's output at step ``t + L`` is the graph's output at step ``t``
(``nir_input_window`` lines the two up).
"""

from neurokd.interop.nir.export import (export_nir, is_neurokd_nir, read_nir_meta,
                                        snn_to_nir, snntorch_spikes)
from neurokd.interop.nir.graph import (DEFAULT_DT, DT_RANGE, MAX_INPUT_VALUES, MAX_LAYER_NEURONS,
                                       NEURON_TYPES, SYNAPSE_TYPES, Chain, GraphStage, check_dt,
                                       nir_input_window, parse_chain, read_graph, simulate_chain,
                                       spike_agreement)
from neurokd.interop.nir.to_snn import Imported, approximation_lines, chain_to_snn

__all__ = ["DEFAULT_DT", "DT_RANGE", "MAX_INPUT_VALUES", "MAX_LAYER_NEURONS", "NEURON_TYPES",
           "SYNAPSE_TYPES", "Chain", "Imported", "GraphStage", "approximation_lines", "chain_to_snn",
           "check_dt", "export_nir", "is_neurokd_nir", "nir_input_window", "parse_chain",
           "read_graph", "read_nir_meta", "simulate_chain", "snn_to_nir", "snntorch_spikes",
           "spike_agreement"]
