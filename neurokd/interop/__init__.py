"""Models from and to other tools: ONNX and PyTorch ``module:factory`` teachers, NIR graphs in and out."""
