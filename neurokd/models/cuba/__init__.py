"""The CUBA family: Loihi's current-based leaky integrate-and-fire neuron with binary spikes.

- :mod:`.numerics`: the chip's fixed-point neuron maths (a fused kernel and the step-by-step
  reference beside it), and the mapping of float parameters to the chip's integers;
- :mod:`.net`: the float network (lava-dl slayer CUBA blocks) that trains with surrogate
  gradients;
- :mod:`.quantized`: the quantized network, computing exactly the integers Lava computes.
"""
