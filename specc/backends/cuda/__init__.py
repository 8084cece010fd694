"""The CUDA backend: ``@cuda.jit`` kernels for numba-cuda, their launcher and the device optimizer."""
