"""Speed benchmarks that print ratios (DESIGN.md §6): `rlddm bench ...`."""

import math
import random
import time

import numpy as np

from .config import load_config
from .simulator import simulate


def python_euler_study(params, design, seed, dt=0.01):
    """The baseline: a plain Python per-step Euler loop of the RL-DDM (as in the public
    BayesFlow example), one participant and one time step at a time. Returns trial count."""
    rand = random.Random(seed)
    sqrt_dt = math.sqrt(dt)
    n_trials = 0
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
            _rt = t0 + elapsed
            q[choice] += alpha * (outcomes[choice] - q[choice])
            n_trials += 1
    return n_trials


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
