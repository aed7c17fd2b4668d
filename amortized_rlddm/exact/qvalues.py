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
(measured with :func:`amortized_rlddm.exact.benchmark.bench_logp`). The group reference lays
its participants' trials end to end and keeps only the sum's nonzero terms (a trial learns
from the rewarded trials of its own pair in its block), :func:`q_difference_terms`.
"""

import numpy as np
import pytensor
import pytensor.tensor as pt

Q_VALUES = ("closed_form", "scan")
CLOSED_FORM_MAX_TRIALS = 300  # "auto": where the closed form is still the faster (bench_logp)


def q_difference_scan(data, alpha_pos, alpha_neg, q_init, n_conditions):
    """Q[1] - Q[0] of each trial's pair before the trial, by replaying the trials with
    pytensor.scan (the Q-values of all pairs are carried, every pair's reset at a new block)."""
    q_start = pt.alloc(pt.as_tensor_variable(q_init).astype("float64"), n_conditions)
    rates = [alpha_pos] if alpha_pos is alpha_neg else [alpha_pos, alpha_neg]  # scan rejects duplicates

    def step(upper, reward, reset, responded, pair, q0, q1, *rates):
        q0 = pt.switch(reset, q_start, q0)
        q1 = pt.switch(reset, q_start, q1)
        chosen = pt.switch(upper, q1[pair], q0[pair])
        delta = reward - chosen
        learned = chosen + pt.switch(delta > 0.0, rates[0], rates[-1]) * delta
        return (pt.set_subtensor(q0[pair], pt.switch(responded & ~upper, learned, q0[pair])),
                pt.set_subtensor(q1[pair], pt.switch(responded & upper, learned, q1[pair])),
                q1[pair] - q0[pair])

    _, _, dq = pytensor.scan(
        step, sequences=[pt.eq(data["choice"], 1), data["reward"], pt.eq(data["reset"], 1),
                         pt.ge(data["choice"], 0), data["condition"]],
        outputs_info=[q_start, q_start, None], non_sequences=rates, return_updates=False)
    return dq


def q_difference_closed_form(data, alpha_pos, alpha_neg, q_init):
    """Q[1] - Q[0] of each trial's pair before the trial, from the update counts (see the
    module docstring).

    Q_arm(t) = q_init (1-alpha_pos)^P (1-alpha_neg)^N
               + alpha_pos sum_j (1-alpha_pos)^{P - P_j - 1} (1-alpha_neg)^{N - N_j},
    over the earlier rewarded trials j of that arm of the same pair in the block, where P and
    N count the rewarded and unrewarded updates of the arm before t and P_j, N_j those before j.
    """
    alpha_pos, alpha_neg, q_init = (pt.as_tensor_variable(x) for x in (alpha_pos, alpha_neg, q_init))
    # the arrays may carry a leading participant axis ((P, 2, T) and (P, T, T)), the rates and
    # q_init then one value per participant
    log_keep_pos = pt.log1p(-alpha_pos)[..., None, None]
    log_keep_neg = pt.log1p(-alpha_neg)[..., None, None]
    kept = pt.exp(data["count_pos"] * log_keep_pos + data["count_neg"] * log_keep_neg)  # ([P,] 2, T)
    learned = pt.sum(data["sign"] * pt.exp(data["power_pos"] * log_keep_pos + data["power_neg"] * log_keep_neg),
                     axis=-1)
    return q_init[..., None] * (kept[..., 1, :] - kept[..., 0, :]) + alpha_pos[..., None] * learned


def closed_form_terms(arrays):
    """The nonzero terms of one participant's closed-form sum (:func:`closed_form_arrays`) as
    flat arrays: the trial each term adds to, its sign and its two exponents."""
    trial, earlier = np.nonzero(arrays["sign"])
    return {"term_trial": trial, "term_sign": arrays["sign"][trial, earlier],
            "term_power_pos": arrays["power_pos"][trial, earlier],
            "term_power_neg": arrays["power_neg"][trial, earlier]}


def q_difference_terms(data, alpha_pos, alpha_neg, q_init):
    """:func:`q_difference_closed_form` of several participants' trials laid end to end, from
    the sum's nonzero terms (:func:`closed_form_terms`): O(terms) rather than O(trials^2).

    `data` holds "count_pos" and "count_neg" ((2, trials)), "participant" (each trial's),
    "term_trial" (the trial each term adds to, in the end-to-end numbering),
    "term_participant", "term_sign", "term_power_pos" and "term_power_neg"; the rates and
    q_init are one value per participant.
    """
    alpha_pos, alpha_neg, q_init = (pt.as_tensor_variable(x) for x in (alpha_pos, alpha_neg, q_init))
    log_keep_pos, log_keep_neg = pt.log1p(-alpha_pos), pt.log1p(-alpha_neg)
    trial_of, term_of = data["participant"], data["term_participant"]
    kept = pt.exp(data["count_pos"] * log_keep_pos[trial_of] + data["count_neg"] * log_keep_neg[trial_of])
    terms = data["term_sign"] * pt.exp(data["term_power_pos"] * log_keep_pos[term_of]
                                       + data["term_power_neg"] * log_keep_neg[term_of])
    learned = pt.inc_subtensor(pt.zeros(trial_of.shape[0])[data["term_trial"]], terms)
    return q_init[trial_of] * (kept[1] - kept[0]) + alpha_pos[trial_of] * learned


def closed_form_arrays(choice, reward, block, condition):
    """Update counts and the weight structure of :func:`q_difference_closed_form`: a trial
    learns from the earlier trials of its own pair in its block."""
    n = choice.shape[0]
    idx = np.arange(n)
    responded = choice >= 0
    start = np.maximum.accumulate(np.where(np.r_[True, block[1:] != block[:-1]], idx, 0))
    # same[t, j]: trial j comes before trial t, in its block and of its pair
    same = (idx[None, :] < idx[:, None]) & (start[None, :] == start[:, None]) \
        & (condition[None, :] == condition[:, None])
    arms = np.arange(2)[:, None, None]
    outcomes = np.array([1, 0])[None, :, None]
    updates = (responded & (choice == arms) & (reward == outcomes)).astype(np.int64)  # (arm, outcome, T)
    counts = updates @ same.T.astype(np.int64)  # updates of each arm before each trial, in its pair and block
    arm = np.where(responded, choice, 0)
    earlier = same & (responded & (reward == 1))[None, :]
    powers = counts[arm[None, :], :, idx[:, None]] - counts[arm, :, idx][None, :, :]  # (t, j, outcome)
    return {"count_pos": counts[:, 0].astype(float), "count_neg": counts[:, 1].astype(float),
            "sign": np.where(earlier, 2.0 * arm[None, :] - 1.0, 0.0),
            "power_pos": np.where(earlier, powers[..., 0] - 1, 0).astype(float),
            "power_neg": np.where(earlier, powers[..., 1], 0).astype(float)}
