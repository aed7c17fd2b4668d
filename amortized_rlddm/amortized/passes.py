"""A trained estimator's compiled passes over packed data: summaries, draws (with their
density) and the flow's density at new values.

Each pass is one compiled function (jax.jit, or tf.function with XLA) called on chunks of
CHUNK participants, the last chunk padded by repeating its final participant, so every call
has one shape and nothing recompiles; the flow's density at new values runs on blocks of
FLOW_BLOCK rows for the same reason.
"""

import keras
import numpy as np

from .networks import backend

__all__ = ["CHUNK", "FLOW_BLOCK", "NetworkPasses", "flow_log_density", "summaries_and_conditions"]

CHUNK = 256  # participants per compiled call
FLOW_BLOCK = 8192  # rows per compiled pass of the flow's density at new values


def summaries_and_conditions(estimator, x, mask, condition):
    """The summary network's output for packed data and the flow's conditions (the direct
    conditions, then the summaries), one row per participant; differentiable."""
    summary = estimator.summary_network(x, mask=mask, training=False)
    return summary, keras.ops.concatenate([condition, summary], axis=-1)


def flow_log_density(estimator, rows, theta):
    """The flow's log density of unbounded values theta (R, parameters) given each one's row of
    conditions (R, conditions): the density of the standardized values and the
    standardization's log-Jacobian; differentiable."""
    z, log_jacobian = estimator.standardizer.maybe_standardize(theta, key="inference_variables", stage="inference",
                                                               forward=True, log_det_jac=True)
    _, log_density = estimator.inference_network(z, conditions=rows, density=True, training=False)
    return log_density + log_jacobian


def _chunks(n):
    """(start, stop, indices) per compiled call: chunks of CHUNK participants, the last one
    padded by repeating its final participant so every call has the same shape."""
    size = min(n, CHUNK)
    for start in range(0, n, size):
        stop = min(start + size, n)
        yield start, stop, np.arange(start, start + size).clip(max=stop - 1)


def _compiled(fn):
    """`fn` compiled for the Keras backend (XLA on TensorFlow: markedly faster on CPU,
    docs/benchmarks.md); as it is on a backend without a compiler."""
    if backend() == "jax":
        import jax

        return jax.jit(fn)
    if backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, reduce_retracing=True, autograph=False, jit_compile=True)
    return fn


class NetworkPasses:
    """The compiled passes of a trained BayesFlow estimator (summary network, coupling flow,
    standardizer), in the flow's unbounded space.

    Parameters
    ----------
    estimator
        A trained BayesFlow estimator.
    """

    def __init__(self, estimator: keras.Model):
        est = estimator

        def conditions(x, mask, condition):
            return summaries_and_conditions(est, x, mask, condition)

        def draws(x, mask, condition, base):
            summary, rows = conditions(x, mask, condition)
            rows = keras.ops.repeat(rows, keras.ops.shape(base)[0] // keras.ops.shape(x)[0], axis=0)
            theta = est.inference_network(base, conditions=rows, inverse=True, training=False)
            theta = est.standardizer.maybe_standardize(theta, key="inference_variables", stage="inference",
                                                       forward=False)
            return theta, summary

        def draws_with_density(x, mask, condition, base):
            """The draws and their log density (the flow's density of the standardized draws
            and the standardization's log-Jacobian)."""
            summary, rows = conditions(x, mask, condition)
            rows = keras.ops.repeat(rows, keras.ops.shape(base)[0] // keras.ops.shape(x)[0], axis=0)
            theta, log_density = est.inference_network(base, conditions=rows, inverse=True, density=True,
                                                       training=False)
            theta = est.standardizer.maybe_standardize(theta, key="inference_variables", stage="inference",
                                                       forward=False)
            _, log_jacobian = est.standardizer.maybe_standardize(theta, key="inference_variables", stage="inference",
                                                                 forward=True, log_det_jac=True)
            return theta, log_density + log_jacobian, summary

        def flow_density(rows, theta):
            return flow_log_density(est, rows, theta)

        self._conditions = _compiled(conditions)
        self._draws = _compiled(draws)
        self._draws_with_density = _compiled(draws_with_density)
        self._flow_density = _compiled(flow_density)

    def conditions(self, data: dict) -> tuple[np.ndarray, np.ndarray]:
        """The summary statistics (participants, summary_dim) and the flow's conditions
        (participants, conditions) of packed data (:func:`~amortized_rlddm.amortized.packing.pack`)."""
        n = data["summary_variables"].shape[0]
        summaries, rows = [], []
        for start, stop, idx in _chunks(n):
            summary, condition = self._conditions(data["summary_variables"][idx], data["summary_mask"][idx],
                                                  data["inference_conditions"][idx])
            summaries.append(np.asarray(summary)[: stop - start])
            rows.append(np.asarray(condition)[: stop - start])
        return np.concatenate(summaries).astype(np.float64), np.concatenate(rows).astype(np.float32)

    def draws(self, data: dict, base: np.ndarray, density: bool = False):
        """Draws of packed data's participants from standard normal base draws (participants,
        draws, parameters): the unbounded draws (same shape), the summary statistics
        (participants, summary_dim) and, with `density`, the draws' log density (participants,
        draws), else None."""
        n, count, p = base.shape
        out = np.empty((n, count, p), np.float32)
        log_density = np.empty((n, count)) if density else None
        summaries = []
        for start, stop, idx in _chunks(n):
            args = (data["summary_variables"][idx], data["summary_mask"][idx], data["inference_conditions"][idx],
                    base[idx].reshape(len(idx) * count, p))
            if density:
                y, log_q, summary = self._draws_with_density(*args)
                log_density[start:stop] = np.asarray(log_q).reshape(len(idx), count)[: stop - start]
            else:
                y, summary = self._draws(*args)
            out[start:stop] = np.asarray(y).reshape(len(idx), count, p)[: stop - start]
            summaries.append(np.asarray(summary)[: stop - start])
        return out, np.concatenate(summaries).astype(np.float64), log_density

    def flow_log_density(self, rows: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """The flow's log density of unbounded values theta (R, parameters), each given its
        row of conditions (R, conditions): (R,), in blocks of FLOW_BLOCK rows."""
        count = theta.shape[0]
        theta = theta.astype(np.float32)
        out = np.empty(count)
        for start in range(0, count, FLOW_BLOCK):
            stop = min(start + FLOW_BLOCK, count)
            block = np.arange(start, start + FLOW_BLOCK).clip(max=stop - 1)  # the last row repeated as padding
            out[start:stop] = np.asarray(self._flow_density(rows[block], theta[block]))[: stop - start]
        return out
