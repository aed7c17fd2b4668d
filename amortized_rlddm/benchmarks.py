"""Speed benchmarks that print ratios (docs/benchmarks.md): `rlddm validate bench ...`."""

import math
import random
import time

import numpy as np

from .model.config import load_config
from .model.designs import named_design
from .model.simulator import simulate


def python_euler_study(params, design, seed, dt=0.01):
    """The baseline: a plain Python per-step Euler loop of the RL-DDM (as in the public
    BayesFlow example), one participant and one time step at a time. Returns trial count."""
    rand = random.Random(seed)
    sqrt_dt = math.sqrt(dt)
    choices, rts = [], []
    for i in range(len(params["v"])):
        v, a, z, t0, alpha = (float(params[k][i]) for k in ("v", "a", "z", "t0", "alpha"))
        q = [design.q_init, design.q_init]
        for t in range(design.max_trials):
            phase = (t // design.reversal_every) % 2 if design.reversal_every else 0
            probs = design.reward_probs if phase == 0 else design.reward_probs[::-1]
            outcomes = [int(rand.random() < p) for p in probs]
            drift = v * (q[1] - q[0])
            x, elapsed = z * a, 0.0
            while 0.0 < x < a:
                x += drift * dt + sqrt_dt * rand.gauss(0.0, 1.0)
                elapsed += dt
            choice = int(x >= a)
            choices.append(choice)
            rts.append(t0 + elapsed)
            q[choice] += alpha * (outcomes[choice] - q[choice])
    return len(rts)


def _best_rate(fn, repeats):
    """Best trials per second over `repeats` calls of fn() -> trial count."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        n = fn()
        best = max(best, n / (time.perf_counter() - start))
    return best


def bench_simulate(config_path, participants=20000, baseline_participants=40, seed=0, repeats=3):
    """Exact compiled simulator vs the plain Python Euler loop, both single-threaded."""
    config = load_config(config_path)
    if config.model != "single":
        raise ValueError("the Euler baseline implements the single-rate model; use a single-rate config")
    rng = np.random.default_rng(seed)
    params = config.priors.sample(rng, participants)
    simulate({k: v[:2] for k, v in params.items()}, config.design, seed)  # compile / load cache
    exact = _best_rate(lambda: int(simulate(params, config.design, seed).n_trials.sum()), repeats)
    base_params = {k: v[:baseline_participants] for k, v in params.items()}
    base_design = config.design
    if isinstance(base_design.n_trials, tuple):
        raise ValueError("the benchmark needs a fixed trial count in the design")
    euler = _best_rate(lambda: python_euler_study(base_params, base_design, seed), 1)
    return {"exact_trials_per_s": exact, "euler_trials_per_s": euler, "ratio": exact / euler,
            "participants": participants, "trials_per_participant": config.design.max_trials}


def print_bench_simulate(result):
    print(f"exact compiled simulator : {result['exact_trials_per_s']:>14,.0f} trials/s/core "
          f"({result['participants']} participants x {result['trials_per_participant']} trials, "
          "prior draws, 1 thread)")
    print(f"python Euler loop, dt=.01: {result['euler_trials_per_s']:>14,.0f} trials/s/core")
    print(f"ratio                    : {result['ratio']:>14,.0f} x")
    target = 2_000_000
    print(f"target >= {target:,} trials/s/core: {'met' if result['exact_trials_per_s'] >= target else 'NOT met'}")


_BACKEND_PROBE = r"""
import json, sys, time
import numpy as np
from amortized_rlddm.model.config import load_config
from amortized_rlddm.amortized.training import training_settings, simulate_packed, trial_buckets
from amortized_rlddm.amortized.networks import build_estimator, backend
import keras

config = load_config(sys.argv[1])
steps = int(sys.argv[2])
network, training = training_settings(config)
rng = np.random.default_rng(0)
size = int(training["batch_size"])
batches = [simulate_packed(config, network, rng, size) for _ in range(8)]

class Batches(keras.utils.PyDataset):
    def __init__(self, data):
        super().__init__()
        self.data = data
    def __len__(self):
        return steps
    def __getitem__(self, i):
        return self.data[i % len(self.data)]

class Timer(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        self.start = time.perf_counter()
    def on_train_batch_end(self, batch, logs=None):
        times.append(time.perf_counter() - self.start)

def step_ms(data):
    times.clear()
    estimator.fit(dataset=Batches(data), epochs=1, verbose=0, callbacks=[Timer()])
    return 1000 * float(np.median(times[5:]))  # the first steps compile

times = []
estimator = build_estimator(network)
estimator.build_from_data(keras.tree.map_structure(keras.ops.convert_to_tensor, batches[0]))
estimator.compile(optimizer=keras.optimizers.Adam(1e-4))
step = step_ms(batches)
bands, probs = trial_buckets(network, int(training["trial_buckets"]))
by_band = {f"{lo}-{hi}": step_ms([simulate_packed(config, network, rng, size, trials=(lo, hi)) for _ in range(8)])
           for lo, hi in bands} if len(bands) > 1 else {}
bucketed = float(np.dot(probs, list(by_band.values()))) if by_band else step

from amortized_rlddm.amortized.posterior import AmortizedPosterior
posterior = AmortizedPosterior(estimator, config)
from amortized_rlddm.model.simulator import simulate
from amortized_rlddm.amortized.training import training_design
design = training_design(config, network)
one = simulate(config.priors.sample(rng, 1), design, seed=1)
many = simulate(config.priors.sample(rng, 1000), design, seed=2)
posterior.sample_unbounded(one, 1000, seed=0)
t = time.perf_counter(); [posterior.sample_unbounded(one, 1000, seed=0) for _ in range(20)]
one_ms = 1000 * (time.perf_counter() - t) / 20
posterior.sample_unbounded(many, 1000, seed=0)
t = time.perf_counter(); posterior.sample_unbounded(many, 1000, seed=0)
many_s = time.perf_counter() - t
print(json.dumps({"backend": backend(), "train_ms_per_step": step, "train_ms_per_band": by_band,
                  "train_ms_per_step_bucketed": bucketed, "infer_1x1000_ms": one_ms, "infer_1000x1000_s": many_s}))
"""


def bench_backends(config_path, steps=40, backends=("tensorflow", "jax")):
    """Training ms/step and inference times of one config on each Keras backend, measured
    in fresh processes (the backend is fixed at import). The step is timed on batches padded
    to the network's trial maximum and, when the config sets training.trial_buckets, on
    each band's batches; their mean weighted by the bands' probabilities is what a bucketed
    training step costs on average."""
    import os
    import subprocess
    import sys

    results = []
    for name in backends:
        env = {**os.environ, "KERAS_BACKEND": name, "TF_CPP_MIN_LOG_LEVEL": "3"}
        proc = subprocess.run([sys.executable, "-c", _BACKEND_PROBE, str(config_path), str(steps)],
                              env=env, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"backend {name} failed:\n{proc.stderr[-2000:]}")
        import json

        results.append(json.loads(lines[-1]))
    return results


def print_bench_backends(results):
    print(f"{'backend':<12}{'train ms/step':>15}{'bucketed':>10}{'infer 1x1000 ms':>18}{'infer 1000x1000 s':>20}")
    for r in results:
        print(f"{r['backend']:<12}{r['train_ms_per_step']:>15.0f}{r['train_ms_per_step_bucketed']:>10.0f}"
              f"{r['infer_1x1000_ms']:>18.1f}{r['infer_1000x1000_s']:>20.2f}")
    for r in results:
        if r["train_ms_per_band"]:
            bands = ", ".join(f"{band} trials {ms:.0f}" for band, ms in r["train_ms_per_band"].items())
            print(f"{r['backend']} ms/step by band: {bands}; bucketed / padded to the maximum = "
                  f"{r['train_ms_per_step_bucketed'] / r['train_ms_per_step']:.2f}")
    if len(results) == 2:
        a, b = results
        print(f"training: {a['backend']} / {b['backend']} step time = "
              f"{a['train_ms_per_step'] / b['train_ms_per_step']:.2f}")


def bench_likelihood(pair_counts=(1, 3, 6, 12), participants=2000, n_trials=120, seed=0, repeats=5):
    """Nanoseconds per trial of the exact likelihood (Numba, one thread) on one simulated study
    whose trials are dealt to 1, 3, 6 or 12 stimulus pairs in turn: the same responses, so the
    same WFPT series, and only the pairs' bookkeeping differs. Its cost per trial should not
    grow with the number of pairs."""
    from dataclasses import replace

    from .model.likelihood import loglik
    from .model.priors import DEFAULT_PRIORS, PriorSet
    from .model.task import TaskDesign

    names = ("v", "a", "z", "t0", "alpha")
    priors = PriorSet({n: DEFAULT_PRIORS[n] for n in names}, names)
    params = priors.sample(np.random.default_rng(seed), participants)
    study = simulate(params, TaskDesign(n_trials=n_trials, reversal_every=None), seed=seed)
    results = {}
    for count in pair_counts:
        condition = (np.arange(n_trials)[None, :] % count).repeat(participants, 0).astype(np.int32)
        dealt = replace(study, condition=condition, condition_labels=tuple(range(count)))
        loglik(dealt, params)  # compile / load cache
        best = min(_timed(lambda: loglik(dealt, params)) for _ in range(repeats))
        results[count] = 1e9 * best / study.n_trials.sum()
    return {"ns_per_trial": results, "participants": participants, "trials": n_trials}


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def print_bench_likelihood(result):
    base = result["ns_per_trial"][min(result["ns_per_trial"])]
    print(f"exact likelihood, {result['participants']} participants x {result['trials']} trials, 1 thread")
    for count, ns in result["ns_per_trial"].items():
        print(f"{count} stimulus pair(s): {ns:7.1f} ns per trial ({ns / base:.2f} x one pair)")


def bench_infer(checkpoint, draws=1000, many=1000, seed=0, repeats=20, design=None):
    """Warm end-to-end `infer` time (packing, sampling, transforms, DataTree) for one
    participant and for `many` participants, simulated from the network's design or from
    `design` (a name of NAMED_DESIGNS; a network of a family of designs needs one)."""
    from .amortized.posterior import AmortizedPosterior

    posterior = AmortizedPosterior.load(checkpoint)
    if design is None and posterior.serves_family:
        raise ValueError(f"the network {posterior.source} serves a family of designs: name one to time (--design)")
    design = posterior.design if design is None else named_design(design)
    rng = np.random.default_rng(seed)
    one = simulate(posterior.config.priors.sample(rng, 1), design, seed=1)
    lots = simulate(posterior.config.priors.sample(rng, many), design, seed=2)
    times = {}
    for label, kwargs in (("", {}), ("unchecked_", {"check": False}), ("corrected_", {"refine": True})):
        posterior.infer(one, draws=draws, seed=0, design=design, **kwargs)
        start = time.perf_counter()
        for _ in range(repeats):
            posterior.infer(one, draws=draws, seed=0, design=design, **kwargs)
        times[f"{label}one_ms"] = 1000 * (time.perf_counter() - start) / repeats
        posterior.infer(lots, draws=draws, seed=0, design=design, **kwargs)
        start = time.perf_counter()
        posterior.infer(lots, draws=draws, seed=0, design=design, **kwargs)
        times[f"{label}many_s"] = time.perf_counter() - start
    return {"backend": posterior.metadata.get("backend"), **times, "many": many, "draws": draws}


def print_bench_infer(result):
    from .amortized.networks import backend

    print(f"backend {backend()}; warm end-to-end infer() with {result['draws']:,} draws per participant")
    for label, key, targets in (("without the check", "unchecked_", (50, 5)), ("checked (default)", "", (50, 5)),
                                ("corrected (--refine)", "corrected_", (300, 60))):
        print(f"{label:<20} 1 participant: {result[key + 'one_ms']:8.1f} ms (target < {targets[0]} ms); "
              f"{result['many']:,} participants: {result[key + 'many_s']:7.2f} s (target < {targets[1]} s)")
    network_ms = 1000 * result["unchecked_many_s"] / result["many"]
    check_ms = 1000 * (result["many_s"] - result["unchecked_many_s"]) / result["many"]
    print(f"per participant in the batch of {result['many']:,}: the network {network_ms:.2f} ms, the exact check "
          f"{check_ms:.2f} ms (ratio {check_ms / network_ms:.2f})")


def bench_correction(posterior, study, design, draws=1000, seed=0, repeats=3):
    """Warm time of the correction (`infer --refine`) of a data file's study under its settings
    `design`, with the participants trusted and the methods of the last run."""
    posterior.infer(study, draws=draws, seed=seed, refine=True, design=design)  # warm-up: compiles
    seconds = []
    for repeat in range(repeats):
        start = time.perf_counter()
        tree = posterior.infer(study, draws=draws, seed=seed + 1 + repeat, refine=True, design=design)
        seconds.append(time.perf_counter() - start)
    checks = tree["importance"]
    methods, counts = np.unique(checks["method"].values, return_counts=True)
    return {"participants": study.n_participants, "draws": draws, "seconds": seconds,
            "trusted": int(checks["trusted"].sum()), "methods": dict(zip(methods.tolist(), counts.tolist()))}


def print_bench_correction(result, source):
    methods = ", ".join(f"{m} {c}" for m, c in result["methods"].items())
    print(f"{source}: {result['participants']} participants x {result['draws']:,} draws corrected (--refine), warm: "
          f"{', '.join(f'{s:.2f}' for s in result['seconds'])} s (median {np.median(result['seconds']):.2f} s); "
          f"last run trusted {result['trusted']}/{result['participants']} ({methods})")


def bench_group(posterior, participants=28, n_trials=60, chains=4, draws=1000, seed=0, reference=True,
                study=None, design=None, source=None):
    """Warm time of the amortized group sampler, with the PyMC reference's time (compilation
    and NUTS, the same chains and draws) beside it, on `study` under its settings `design`
    (a data file's, e.g. HDDM's 28 subjects with a network that serves their design), or
    without one on a simulated study of `participants` x n_trials at the network's design.
    `posterior`: an AmortizedPosterior."""
    from .group.fit import fit_group
    from .validation.group import reference_posterior, simulate_group_study

    if study is None:
        study, _, _ = simulate_group_study(posterior, participants, n_trials, False, seed)
    fit_group(posterior, study, chains=chains, draws=draws, seed=seed, design=design)  # warm-up: compiles
    start = time.perf_counter()
    tree = fit_group(posterior, study, chains=chains, draws=draws, seed=seed + 1, design=design)
    result = {"study": source or "simulated", "participants": study.n_participants,
              "trials": int(study.n_trials.sum()), "chains": chains, "draws": draws,
              "amortized_s": time.perf_counter() - start,
              "proposals_s": float(tree["posterior"].attrs["proposals_seconds"]),
              "acceptance_median": float(tree["acceptance"]["acceptance_rate"].median()),
              "surrogate_acceptance": float(tree["acceptance"]["surrogate_acceptance_rate"]),
              "trusted": int(tree["correction"]["trusted"].sum())}
    if reference:
        _, attrs = reference_posterior(study, posterior, ["all"] * study.n_participants, seed, draws, design)
        result["reference_compile_s"] = float(attrs["compile_seconds"])
        result["reference_sample_s"] = float(attrs["sample_seconds"])
    return result


def print_bench_group(result):
    print(f"group level, {result['study']}: {result['participants']} participants, {result['trials']:,} trials in all, "
          f"{result['chains']} chains x {result['draws']:,} draws")
    print(f"amortized Metropolis-within-Gibbs: {result['amortized_s']:.2f} s (the corrected posteriors and the "
          f"proposals {result['proposals_s']:.2f} s; trusted {result['trusted']}/{result['participants']}; median "
          f"acceptance {result['acceptance_median']:.2f}, surrogate moves {result['surrogate_acceptance']:.2f}; "
          f"target < 10 s)")
    if "reference_sample_s" in result:
        total = result["reference_compile_s"] + result["reference_sample_s"]
        print(f"PyMC reference (nutpie NUTS): {total:.1f} s ({result['reference_compile_s']:.1f} s compiling, "
              f"{result['reference_sample_s']:.1f} s sampling): {total / result['amortized_s']:.0f}x")
