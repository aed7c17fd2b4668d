"""The BayesFlow summary and inference networks a config names, and the Keras backend."""

import bayesflow as bf
import keras


def backend():
    """The Keras backend this process runs ("tensorflow" or "jax", set by KERAS_BACKEND)."""
    return keras.backend.backend()


# The BayesFlow networks a config may name. TimeSeriesTransformer and RecurrentNetwork honour
# the padding mask; TimeSeriesNetwork (convolutions + GRU) has none and sees the zero padding
# up to the network's trial maximum, which packing always applies, so it is consistent but
# kept for the summary ablation. FlowMatching samples by an ODE solve (integrate_kwargs)
# instead of one inverse pass and is slower to sample; it is kept for the inference ablation.
SUMMARY_NETWORKS = ("TimeSeriesTransformer", "RecurrentNetwork", "TimeSeriesNetwork")
INFERENCE_NETWORKS = ("CouplingFlow", "FlowMatching")


def network_kinds(network_spec):
    """(summary class name, inference class name) of a network spec; each section's optional
    'kind' picks a BayesFlow class, by default TimeSeriesTransformer and CouplingFlow."""
    summary = (network_spec.get("summary") or {}).get("kind", "TimeSeriesTransformer")
    inference = (network_spec.get("inference") or {}).get("kind", "CouplingFlow")
    if summary not in SUMMARY_NETWORKS:
        raise ValueError(f"network.summary.kind: expected one of {SUMMARY_NETWORKS}, got {summary!r}")
    if inference not in INFERENCE_NETWORKS:
        raise ValueError(f"network.inference.kind: expected one of {INFERENCE_NETWORKS}, got {inference!r}")
    return summary, inference


def build_estimator(network_spec):
    """A BasicEstimator with the spec's summary network (default TimeSeriesTransformer) and
    inference network (default CouplingFlow); each section's other keys are the class's
    keyword arguments."""
    summary_kind, inference_kind = network_kinds(network_spec)
    summary_kwargs = {k: v for k, v in (network_spec.get("summary") or {}).items() if k != "kind"}
    for key in ("embed_dims", "num_heads", "hidden_dim", "filters", "kernel_sizes", "strides"):  # YAML lists -> tuples
        if isinstance(summary_kwargs.get(key), list):
            summary_kwargs[key] = tuple(summary_kwargs[key])
    inference_kwargs = {k: v for k, v in (network_spec.get("inference") or {}).items() if k != "kind"}
    adapter = bf.Adapter().convert_dtype("float64", "float32")
    return bf.BasicEstimator(
        inference_network=getattr(bf.networks, inference_kind)(**inference_kwargs),
        summary_network=getattr(bf.networks, summary_kind)(**summary_kwargs),
        adapter=adapter,
        standardize="inference_variables",
    )
