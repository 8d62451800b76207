"""What the plugin needs at run time: its data home, onnxruntime, and the GPU."""
