"""Graph -> graph transformations: reverse-mode autodiff (BPTT for scans) and the optimisation passes."""
