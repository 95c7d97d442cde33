"""The runtime parallel layout: rank grid, pipeline layer split, rank placement on nodes, and the\ntorch.distributed process groups built from them."""
