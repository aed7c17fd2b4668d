# %% [markdown]
# # The PyMC gallery's reinforcement-learning example, exactly and in milliseconds
#
# PyMC's example gallery fits Q-learning with a softmax choice rule to one simulated
# participant ("Fitting a reinforcement learning model to behavioral data with PyMC",
# www.pymc.io/projects/examples): a two-armed bandit of 150 trials whose arms pay with
# probabilities 0.4 and 0.6, Q-values starting at 0.5, learning rate alpha 0.5 and inverse
# temperature beta 5; priors alpha ~ Beta(1, 1), beta ~ HalfNormal(10); the likelihood a
# PyTensor `scan` over the trials inside `pm.Potential`. This tutorial redoes it with this
# package's choice-only model `softmax`:
#
# 1. the gallery's data, from its own generator and seed, and its maximum-likelihood estimate;
# 2. the exact posterior three ways: NUTS on this package's exact likelihood, NUTS on the
#    gallery's own scan model, and the shipped `softmax` network (raw, and corrected by the
#    exact likelihood), side by side with their times;
# 3. the network's recovery of alpha and beta over 300 simulated participants of this design.
#
# ```bash
# TUTORIAL_OUT=tutorial_output python docs/tutorials/pymc_gallery.py
# ```
#
# The test suite runs this script, so what it shows is what the package does. It is a
# jupytext "percent" script: `jupytext --to notebook pymc_gallery.py` makes it a notebook.

# %%
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytensor.tensor as pt
from matplotlib.figure import Figure

from amortized_rlddm import AmortizedPosterior, LikelihoodSettings, PriorSet, read_study, simulate, summarize
from amortized_rlddm.exact.mle import fit_mle
from amortized_rlddm.exact.model import ExactPosterior
from amortized_rlddm.model.config import MODELS
from amortized_rlddm.model.designs import named_design

out = Path(os.environ.get("TUTORIAL_OUT", "tutorial_output"))
out.mkdir(parents=True, exist_ok=True)
DRAWS, CHAINS = 20000, 4  # 80,000 draws in all: each mean's Monte Carlo error about 0.004 sd

# %% [markdown]
# ## The gallery's data
#
# The gallery simulates its participant with NumPy's default generator seeded by
# `sum(map(ord, "RL_PyMC"))`: before each trial the softmax of beta Q gives the probability of
# each arm, the chosen arm pays with its probability, and its Q moves toward the reward by
# alpha. The same draws in the same order give the same 150 choices and rewards. A file
# without an `rt` column is choices alone: the choice-only models read it, the RL-DDM refuses it.

# %%
rng = np.random.default_rng(sum(map(ord, "RL_PyMC")))
true_alpha, true_beta, n_trials, pay = 0.5, 5.0, 150, np.array([0.4, 0.6])
q = np.array([0.5, 0.5])
actions, rewards = np.zeros(n_trials, int), np.zeros(n_trials, int)
for t in range(n_trials):
    p = np.exp(true_beta * q) / np.exp(true_beta * q).sum()
    actions[t] = rng.choice([0, 1], p=p)
    rewards[t] = rng.random() < pay[actions[t]]
    q[actions[t]] += true_alpha * (rewards[t] - q[actions[t]])

data_file = out / "gallery_data.csv"
pd.DataFrame({"participant": "gallery", "trial": np.arange(1, n_trials + 1), "choice": actions,
              "reward": rewards, "q_init": 0.5}).to_csv(data_file, index=False)
study = read_study(data_file)
print(f"{study.n_trials[0]} trials, {actions.mean():.2f} of them the better arm, {rewards.mean():.2f} rewarded; "
      f"response times: {'yes' if study.has_rt else 'none'}")

# %% [markdown]
# ## Maximum likelihood
#
# The gallery's maximum-likelihood estimate is alpha 0.50, beta 5.71; `fit_mle` with the
# model's priors (their names say which model; they set the parameters' ranges) gives it.

# %%
priors = PriorSet.from_dict({}, MODELS["softmax"])  # no priors given: the model's defaults, the gallery's
mle = fit_mle(study, priors, starts=4, seed=0)["params"]
print(f"maximum likelihood: alpha {mle['alpha']:.2f}, beta {mle['beta']:.2f}")

# %% [markdown]
# ## The posterior three ways
#
# **NUTS on the exact likelihood.** `ExactPosterior` builds the PyMC model of the package's
# exact likelihood (the Q-values in closed form, no scan) and samples it with nutpie.

# %%
exact = ExactPosterior(priors, "softmax", LikelihoodSettings(q_init=0.5), max_trials=n_trials)
start = time.perf_counter()
exact.compile()  # once per model: later participants reuse it
compiled = time.perf_counter()
fit = exact.fit_one(study, draws=DRAWS, tune=1000, chains=CHAINS, seed=1)
seconds = {"exact NUTS (this package)": time.perf_counter() - compiled}
posteriors = {"exact NUTS (this package)": fit.trace["posterior"].to_dataset()}
print(f"exact NUTS: compiled in {compiled - start:.1f} s, sampled in {seconds['exact NUTS (this package)']:.1f} s; "
      f"r-hat {fit.diagnostics['rhat_max']:.3f}, bulk ESS {fit.diagnostics['ess_bulk_min']:.0f}, "
      f"{fit.diagnostics['divergences']} divergences")

# %% [markdown]
# **The gallery's model.** The gallery writes the likelihood with a `scan` that carries the
# Q-values through the trials; the softmax of beta Q before each trial scores its choice
# (the first trial's probability is 1/2 whatever the parameters, so the gallery leaves it out).
# Here it is, sampled with PyMC's own NUTS as the gallery samples it (its time includes
# compiling the model).

# %%
def update_q(action, reward, q, alpha):
    return pt.set_subtensor(q[action], q[action] + alpha * (reward - q[action]))


with pm.Model() as gallery_model:
    alpha = pm.Beta("alpha", 1, 1)
    beta = pm.HalfNormal("beta", 10)
    q_after = pytensor.scan(update_q, sequences=[pt.as_tensor_variable(actions, dtype="int32"),
                                                 pt.as_tensor_variable(rewards, dtype="int32")],
                            outputs_info=[0.5 * pt.ones((2,), dtype="float64")], non_sequences=[alpha],
                            return_updates=False)
    utilities = q_after[:-1] * beta  # the Q-values before trials 2..150
    log_p = utilities - pt.logsumexp(utilities, axis=1, keepdims=True)
    pm.Potential("choices", pt.sum(log_p[pt.arange(n_trials - 1), actions[1:]]))

start = time.perf_counter()
trace = pm.sample(draws=DRAWS, tune=1000, chains=CHAINS, random_seed=2, model=gallery_model, nuts_sampler="pymc",
                  progressbar=False)
seconds["PyMC scan (the gallery's)"] = time.perf_counter() - start  # compilation included
posteriors["PyMC scan (the gallery's)"] = trace["posterior"].to_dataset()

# %% [markdown]
# **The network.** The shipped `softmax` network was trained once on the general family of
# choice-only bandit designs (20-400 trials, pairs, blocks, omissions) with the gallery's
# priors. Its raw draws take milliseconds; `refine=True` checks them against the exact
# likelihood by Pareto-smoothed importance sampling and resamples them to the exact posterior
# (`importance.trusted` says whether that worked). A first call of each compiles; the times
# are of the second.

# %%
network = AmortizedPosterior.load("softmax")
design = named_design("gallery")  # the gallery's bandit: its settings (Q starting at 0.5)
for label, refine in (("network, raw", False), ("network, corrected", True)):
    network.infer(study, draws=CHAINS * DRAWS, seed=3, design=design, refine=refine)  # compilation
    start = time.perf_counter()
    tree = network.infer(study, draws=CHAINS * DRAWS, seed=3, design=design, refine=refine)
    seconds[label] = time.perf_counter() - start
    posteriors[label] = tree["posterior"].to_dataset().squeeze("participant", drop=True)
print(f"corrected: trusted {bool(tree['importance']['trusted'].values[0])} "
      f"({tree['importance']['method'].values[0]}), k-hat of the raw draws "
      f"{float(tree['importance']['flow_khat'].values[0]):.2f}")

# %% [markdown]
# ## Side by side
#
# Each method's posterior mean and sd, and its mean's distance from the exact NUTS mean in
# exact posterior sds. Both NUTS runs sample the same posterior (the gallery's model and this
# package's likelihood agree to the last digit, tests/exact/test_pymc_model.py), so their
# difference is Monte Carlo error; the corrected network's draws are the exact posterior's too.

# %%
reference = posteriors["exact NUTS (this package)"]
rows = []
for label, post in posteriors.items():
    row = {"method": label, "seconds": seconds[label]}
    for name in ("alpha", "beta"):
        values, ref = post[name].values.ravel(), reference[name].values.ravel()
        row.update({f"{name}_mean": values.mean(), f"{name}_sd": values.std(),
                    f"{name}_shift_in_sd": (values.mean() - ref.mean()) / ref.std()})
    rows.append(row)
table = pd.DataFrame(rows)
table.to_csv(out / "gallery_posteriors.csv", index=False, float_format="%.4f")
with pd.option_context("display.width", 200):
    print(table.round(3).to_string(index=False))

fig = Figure(figsize=(8, 3.2))
for ax, name in zip(fig.subplots(1, 2), ("alpha", "beta")):
    for (label, post), style in zip(posteriors.items(), ("-", "--", ":", "-.")):
        ax.hist(post[name].values.ravel(), bins=60, density=True, histtype="step", ls=style, label=label)
    ax.axvline(mle[name], color="grey", lw=0.8)
    ax.set_xlabel(name)
fig.axes[0].legend(fontsize=7)
fig.suptitle("the gallery's participant: four posteriors (grey: the maximum-likelihood estimate)", fontsize=9)
fig.tight_layout()
fig.savefig(out / "gallery_posteriors.png", dpi=110)

# %% [markdown]
# ## Recovery with the learning rate in focus
#
# 300 participants simulated on the gallery's design with parameters from the priors; the
# corrected network's posterior means against the truth. Where beta is small the choices hardly
# follow the Q-values and alpha cannot be learned: its posterior stays near the prior's mean.
# `rlddm validate report softmax-compare-100` and `softmax-compare-200` put the same against
# NUTS on each participant (reports/softmax/).

# %%
sim_rng = np.random.default_rng(4)
truth = priors.sample(sim_rng, 300)
simulated = simulate(truth, design, seed=5)
start = time.perf_counter()
recovered = summarize(network.infer(simulated, draws=1000, seed=6, design=design, refine=True))
print(f"300 participants, corrected, in {time.perf_counter() - start:.1f} s")
fig = Figure(figsize=(8, 3.4))
for ax, name in zip(fig.subplots(1, 2), ("alpha", "beta")):
    means = recovered[recovered["parameter"] == name].set_index("participant").loc[
        [str(p) for p in simulated.participant], "mean"].to_numpy()
    r = np.corrcoef(truth[name], means)[0, 1]
    points = ax.scatter(truth[name], means, c=truth["beta"], s=8, cmap="viridis")
    limits = [min(truth[name].min(), means.min()), max(truth[name].max(), means.max())]
    ax.plot(limits, limits, color="grey", lw=0.8)
    ax.set(xlabel=f"true {name}", ylabel=f"posterior mean of {name}", title=f"r = {r:.3f}")
    print(f"recovery of {name}: r = {r:.3f}")
fig.colorbar(points, ax=fig.axes, label="true beta")
fig.savefig(out / "gallery_recovery.png", dpi=110)
