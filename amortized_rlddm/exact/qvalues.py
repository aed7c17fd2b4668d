"""Q-value differences in PyTensor, for the exact model's drift on every trial at once.

Rewards are 0 or 1 and Q-values stay in [0, 1], so the prediction error r - Q is >= 0 after
a reward and <= 0 otherwise (and where it is 0 the rate does not matter): a rewarded update
is always ``Q <- (1 - alpha_pos) Q + alpha_pos`` and an unrewarded one
``Q <- (1 - alpha_neg) Q``. Each Q-value before trial t is therefore a closed-form sum over
the earlier rewarded trials of its arm in its block, with exponents that are update counts
known from the data (``"closed_form"``, a (trials x trials) weighted sum).
``"scan"`` replays the trials with ``pytensor.scan`` instead.

The closed form costs O(trials^2) and the scan O(trials) with a larger constant; the exact
model's ``q_values="auto"`` takes the closed form up to 300 trials and the scan above
(measured with :func:`amortized_rlddm.exact.benchmark.bench_logp`).
"""

import numpy as np
import pytensor
import pytensor.tensor as pt

Q_VALUES = ("closed_form", "scan")
CLOSED_FORM_MAX_TRIALS = 300  # "auto": where the closed form is still the faster (bench_logp)


def q_difference_scan(data, alpha_pos, alpha_neg, q_init):
    """Q[1] - Q[0] before each trial, by replaying the trials with pytensor.scan."""
    q_start = pt.as_tensor(np.float64(q_init))
    rates = [alpha_pos] if alpha_pos is alpha_neg else [alpha_pos, alpha_neg]  # scan rejects duplicates

    def step(upper, reward, reset, responded, q0, q1, *rates):
        q0 = pt.switch(reset, q_start, q0)
        q1 = pt.switch(reset, q_start, q1)
        chosen = pt.switch(upper, q1, q0)
        delta = reward - chosen
        learned = chosen + pt.switch(delta > 0.0, rates[0], rates[-1]) * delta
        return (pt.switch(responded & ~upper, learned, q0), pt.switch(responded & upper, learned, q1),
                q1 - q0)

    _, _, dq = pytensor.scan(
        step, sequences=[pt.eq(data["choice"], 1), data["reward"], pt.eq(data["reset"], 1),
                         pt.ge(data["choice"], 0)],
        outputs_info=[q_start, q_start, None], non_sequences=rates, return_updates=False)
    return dq


def q_difference_closed_form(data, alpha_pos, alpha_neg, q_init):
    """Q[1] - Q[0] before each trial from the update counts (see the module docstring).

    Q_arm(t) = q_init (1-alpha_pos)^P (1-alpha_neg)^N
               + alpha_pos sum_j (1-alpha_pos)^{P - P_j - 1} (1-alpha_neg)^{N - N_j},
    over the earlier rewarded trials j of that arm in the block, where P and N count the
    rewarded and unrewarded updates of the arm before t and P_j, N_j those before j.
    """
    log_keep_pos = pt.log1p(-alpha_pos)
    log_keep_neg = pt.log1p(-alpha_neg)
    kept = pt.exp(data["count_pos"] * log_keep_pos + data["count_neg"] * log_keep_neg)  # (2, T)
    learned = pt.sum(data["sign"] * pt.exp(data["power_pos"] * log_keep_pos + data["power_neg"] * log_keep_neg),
                     axis=1)
    return q_init * (kept[1] - kept[0]) + alpha_pos * learned


def closed_form_arrays(choice, reward, block):
    """Update counts and the weight structure of :func:`q_difference_closed_form`."""
    n = choice.shape[0]
    idx = np.arange(n)
    responded = choice >= 0
    start = np.maximum.accumulate(np.where(np.r_[True, block[1:] != block[:-1]], idx, 0))
    arms = np.arange(2)[:, None, None]
    outcomes = np.array([1, 0])[None, :, None]
    updates = (responded & (choice == arms) & (reward == outcomes)).astype(np.int64)  # (arm, outcome, T)
    before = np.cumsum(updates, axis=-1) - updates
    counts = before - before[..., start]  # updates before each trial within its block
    arm = np.where(responded, choice, 0)
    earlier = (idx[None, :] < idx[:, None]) & (start[None, :] == start[:, None]) \
        & (responded & (reward == 1))[None, :]
    powers = counts[arm[None, :], :, idx[:, None]] - counts[arm, :, idx][None, :, :]  # (t, j, outcome)
    return {"count_pos": counts[:, 0].astype(float), "count_neg": counts[:, 1].astype(float),
            "sign": np.where(earlier, 2.0 * arm[None, :] - 1.0, 0.0),
            "power_pos": np.where(earlier, powers[..., 0] - 1, 0).astype(float),
            "power_neg": np.where(earlier, powers[..., 1], 0).astype(float)}
