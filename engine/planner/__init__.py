"""`onenode plan`: offline advice on the TP x PP layout and the KV cache, before launching (pure,\nexcept model_shape.py, which reads a config or GGUF header, and cli.py)."""
