"""The group level: the hierarchical model (:mod:`.model`), proposals fitted to each
participant's corrected posterior (:mod:`.proposals`), the exact Metropolis-within-Gibbs
sampler (:mod:`.sampler`), the study-level call (:func:`~amortized_rlddm.group.fit.fit_group`)
and the PyMC reference model (:mod:`.reference`, the ``[pymc]`` extra). Importing it starts
neither TensorFlow nor PyMC: the network comes in as an argument."""

from .fit import fit_group, group_labels
from .model import GroupModel
from .proposals import ParticipantMixtures
from .sampler import gaussian_surrogate, metropolis_within_gibbs

__all__ = ["GroupModel", "ParticipantMixtures", "fit_group", "gaussian_surrogate", "group_labels",
           "metropolis_within_gibbs"]
