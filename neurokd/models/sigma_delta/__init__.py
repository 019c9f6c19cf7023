"""The sigma-delta family (SDNN): Loihi 2's neurons that send a graded spike carrying the change of
their ReLU activation once it passes a threshold, so a DNN maps onto them almost one to one and a
slowly changing input costs only its changes.

- :mod:`.numerics`: the chip's fixed-point maths (a batched kernel and the step-by-step reference
  beside it);
- :mod:`.net`: the quantized network (``SigmaDeltaNet``) in the chip's integers, the one mapping of
  a float ReLU network onto them, and its netx export.
"""
