"""The NumPy/Numba core: task design, priors, configs, the exact simulator and the exact likelihood."""
