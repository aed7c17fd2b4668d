# %% [markdown]
# # HDDM's RL-DDM example: from its file to trusted posteriors, the group level and single vs dual
#
# HDDM's RL-DDM tutorial fits a probabilistic selection task: 28 subjects, three stimulus
# pairs (AB, CD, EF; the better option rewarded 80, 70 and 60% of the time), 113-360 trials
# each. Its data file is `hddm/examples/rlddm_data.csv` in HDDM's repository
# (github.com/hddm-devs/hddm); download it and run
#
# ```bash
# HDDM_DATA=rlddm_data.csv TUTORIAL_OUT=tutorial_output python docs/tutorials/hddm_example.py
# ```
#
# This script is run by the test suite, so what it shows is what the package does. It is a
# jupytext "percent" script: `jupytext --to notebook hddm_example.py` makes it a notebook.

# %%
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from amortized_rlddm import AmortizedPosterior, SettingOptions, fit_group, prepare_study, read_study, summarize
from amortized_rlddm.validation.group import plot_group_posteriors
from amortized_rlddm.validation.plots import plot_posteriors

data_file = os.environ.get("HDDM_DATA", "rlddm_data.csv")
out = Path(os.environ.get("TUTORIAL_OUT", "tutorial_output"))
out.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## The data and HDDM's settings
#
# HDDM's columns (`subj_idx`, `split_by` for the pair, `response` 1 for the better option,
# `rt`, `feedback`) read with `convention="hddm"`. HDDM's RL-DDM leaves out each pair's first
# trial (no learning before it) and mixes in 5% contaminant responses uniform on [0, 5] s; the
# same options as on the command line (`--exclude-first --p-outlier 0.05 --rt-max 5`) give the
# same study and likelihood settings here.

# %%
single = AmortizedPosterior.load("general")  # the shipped network for real designs
study, design, excluded = prepare_study(read_study(data_file, convention="hddm"),
                                        SettingOptions(exclude_first=True, p_outlier=0.05, rt_max=5.0),
                                        single.base_design)
print(f"{study.n_participants} subjects, {int(study.n_trials.sum())} trials; excluded: "
      + ", ".join(f"{rule}: {int(counts.sum())}" for rule, counts in excluded.items()))

# %% [markdown]
# ## Trusted posteriors, subject by subject
#
# `refine=True` corrects each subject's network draws with the exact posterior: importance
# resampling where they pass the check, adaptive importance sampling and DE-MCz chains where
# they do not. `importance.trusted` says whose draws are the exact posterior's, `method` how
# they were made.

# %%
start = time.perf_counter()
tree = single.infer(study, draws=1000, seed=1, design=design, refine=True, log_likelihood=True)
checks = tree["importance"]
methods = pd.Series(checks["method"].values).value_counts().to_dict()
print(f"single learning rate: trusted {int(checks['trusted'].sum())}/{study.n_participants} {methods} "
      f"in {time.perf_counter() - start:.1f} s")
for participant, reason in zip(checks["participant"].values[~checks["trusted"].values],
                               checks["reason"].values[~checks["trusted"].values]):
    print(f"  not trusted: {participant}: {reason}")
summary = summarize(tree)
plot_posteriors(summary, out / "posteriors.png")  # untrusted subjects, if any, in red
summary[summary["parameter"] == "alpha"][["participant", "mean", "sd", "trusted", "method"]].head()

# %% [markdown]
# ## One learning rate or two?
#
# The dual-rate network (`general-dual`: alpha_pos after positive prediction errors,
# alpha_neg after negative ones) on the same study. Each subject's log evidence comes with
# the correction (the importance-sampling estimate of log p(data)), and the pointwise
# log-likelihood gives PSIS-LOO: per subject, dual minus single.

# %%
dual = AmortizedPosterior.load("general-dual")
dual_tree = dual.infer(study, draws=1000, seed=1, design=design, refine=True, log_likelihood=True)
dual_checks = dual_tree["importance"]
print(f"dual learning rates: trusted {int(dual_checks['trusted'].sum())}/{study.n_participants}")
both = checks["trusted"].values & dual_checks["trusted"].values
comparison = pd.DataFrame({
    "participant": checks["participant"].values,
    "log_bayes_factor": dual_checks["log_evidence"].values - checks["log_evidence"].values,
    "elpd_difference": dual_checks["elpd_loo"].values - checks["elpd_loo"].values,
    "both_trusted": both})
print(f"subjects trusted under both models: {both.sum()}; dual favoured by the evidence for "
      f"{int((comparison['log_bayes_factor'][both] > 0).sum())}, by PSIS-LOO for "
      f"{int((comparison['elpd_difference'][both] > 0).sum())}; study totals: log Bayes factor "
      f"{comparison['log_bayes_factor'][both].sum():.1f}, elpd difference "
      f"{comparison['elpd_difference'][both].sum():.1f}")

# %%
fig = Figure(figsize=(7, 3))
ax = fig.subplots()
order = np.argsort(comparison["log_bayes_factor"].to_numpy())
ax.bar(np.arange(len(order)), comparison["log_bayes_factor"].to_numpy()[order],
       color=np.where(comparison["both_trusted"].to_numpy()[order], "C0", "C3"))
ax.axhline(0, color="grey", lw=0.8)
ax.set_xticks(np.arange(len(order)), comparison["participant"].to_numpy()[order], fontsize=6, rotation=90)
ax.set_ylabel("log Bayes factor, dual - single")
ax.set_title("per subject (red: not trusted under both models)", fontsize=9)
fig.tight_layout()
fig.savefig(out / "single_vs_dual.png", dpi=110)

# %% [markdown]
# ## The group level
#
# `fit_group` samples the exact hierarchical posterior (normal group distributions on each
# parameter's unbounded scale): every subject's parameters and the group means and sds, 4
# chains. Its proposals are fitted to each subject's corrected posterior, as above.

# %%
start = time.perf_counter()
group = fit_group(single, study, design=design, chains=4, tune=500, draws=1000, seed=2)
post = group["posterior"].to_dataset()
rhat = max(float(group["diagnostics"][v].max()) for v in group["diagnostics"].data_vars if v.startswith("rhat"))
print(f"group level in {time.perf_counter() - start:.1f} s; max r-hat {rhat:.3f}")
table = pd.DataFrame([{"variable": name, "mean": float(post[name].mean()), "sd": float(post[name].std())}
                      for name in post.data_vars if name.startswith(("mu_", "sigma_"))])
plot_group_posteriors(post, out / "group_posteriors.png")
table.round(3)
