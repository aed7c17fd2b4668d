"""Is the posterior right: calibration diagnostics, the power analysis, the comparison with NUTS,
the ablation, and their figures."""
