"""Named designs of the studies people run: the general networks' validation designs
(`rlddm diagnose --design NAME`, `compare --design`, `check --design`; docs/validation.md).

Each is a :class:`~amortized_rlddm.model.task.TaskDesign` with the likelihood settings it is
fitted with. The first six are the layouts themselves; the two `_contaminants` variants add
the contaminants (and, for HDDM, the exclusions) their real datasets are fitted with
(docs/validation.md, "Real data").
"""

from dataclasses import replace

from .task import Pair, TaskDesign

_HDDM_PST = TaskDesign(n_trials=(120, 360), pairs=(Pair((0.8, 0.2), None), Pair((0.7, 0.3), None),
                                                   Pair((0.6, 0.4), None)))
_GERSHMAN = TaskDesign(n_trials=100, n_blocks=4, presentation="blocked", q_init=0.0,
                       pairs=(Pair((0.75, 0.25), None), Pair((0.4, 0.8), None), Pair((0.6, 0.3), None),
                              Pair((0.2, 0.7), None)))

NAMED_DESIGNS = {
    # the seed design: the public BayesFlow RL-DDM example
    "seed": TaskDesign(n_trials=60, reward_probs=(0.8, 0.2), reversal_every=12),
    # HDDM's probabilistic selection task: three interleaved pairs, 40-120 trials each
    "hddm_pst": _HDDM_PST,
    # Gershman's bandit: 4 blocks of 25 trials, a new pair in each, Q-values starting at 0
    "gershman": _GERSHMAN,
    # the PyMC example gallery's bandit: 150 trials, arms rewarded with probabilities 0.4 and 0.6,
    # Q-values starting at 0.5 (its choice-only example; the softmax networks' validation design)
    "gallery": TaskDesign(n_trials=150, reward_probs=(0.4, 0.6), reversal_every=None, q_init=0.5),
    # a long stable bandit
    "stable300": TaskDesign(n_trials=300, reward_probs=(0.7, 0.3), reversal_every=None),
    # a response deadline of 1.5 s, plus 5% omissions the data mark (excluded trials)
    "deadline": TaskDesign(n_trials=100, reward_probs=(0.8, 0.2), reversal_every=20, deadline=1.5,
                           omission_rate=0.05),
    # HDDM's data as its RL-DDM fits them: the first trial of each pair excluded and contaminants
    # (p_outlier 0.05, RTs uniform on [0, 5] s)
    "hddm_pst_contaminants": replace(_HDDM_PST, p_outlier=0.05, rt_max=5.0, exclude_first=True),
    # Gershman's data as its exact fits take them: contaminants with RTs uniform on [0, 12] s
    "gershman_contaminants": replace(_GERSHMAN, p_outlier=0.05, rt_max=12.0),
}


def named_design(name: str) -> TaskDesign:
    """A design of :data:`NAMED_DESIGNS` by name (a ValueError naming the choices otherwise)."""
    if name not in NAMED_DESIGNS:
        raise ValueError(f"design '{name}' unknown; expected one of {sorted(NAMED_DESIGNS)}")
    return NAMED_DESIGNS[name]
