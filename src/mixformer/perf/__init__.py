"""Performance measurement: the end-to-end tracker benchmark, matmul peak, MAC counting."""
