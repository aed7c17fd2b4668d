"""Is the posterior right: calibration diagnostics, design planning, the comparison with NUTS,
the ablation, and their figures."""
