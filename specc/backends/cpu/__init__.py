"""The CPU backend: Python source for Numba's ``@njit``, its math helpers and its threaded runtime."""
