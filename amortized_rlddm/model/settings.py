"""What a user says of a study's likelihood, turned into its settings and exclusions once.

Every command that reads a data file (``infer``, ``check``, ``group``, ``fit-exact`` and the
maintainers' reports) passes its options through :func:`prepare_study`, so the same options
give the same likelihood everywhere: a named design's settings and exclusions, or a base
design changed by the options given, with the exclusion rules applied to the study.
"""

from dataclasses import dataclass, fields, replace

from ..data.exclusions import exclude_fast_responses, exclude_first_trial_of_each_condition
from ..data.study import Study
from .designs import named_design
from .task import TaskDesign

__all__ = ["HDDM_DEFAULTS", "HDDM_FIXED", "SettingOptions", "prepare_study", "with_settings"]

# HDDM's RL-DDM (HDDMrl) mixes in contaminants by default: p_outlier 0.05 at w_outlier = 0.1
# per second and response, i.e. RTs uniform on [0, 5] s with a random choice; it also leaves
# each pair's first trial out and fixes z at 0.5 (HDDM_FIXED: a prior matter, for exact fits)
HDDM_DEFAULTS = {"p_outlier": 0.05, "rt_max": 5.0}
HDDM_FIXED = {"z": 0.5}

FIRST_TRIAL_RULE = "first trial of each pair (HDDM)"
FAST_RESPONSE_RULE = "faster than --min-rt"


@dataclass(frozen=True)
class SettingOptions:
    """The options a user gives for a study's likelihood (None: not given).

    design: a named design (amortized_rlddm.model.designs) whose settings and exclusions
        replace the base's; it excludes deadline, missing, q_init, p_outlier and rt_max.
    deadline, missing, q_init, p_outlier, rt_max: changes to the base design's settings.
    min_rt: exclude responses faster than this (seconds) from the likelihood.
    exclude_first: exclude each participant's first trial of every pair (HDDM's convention).
    hddm_compatible: HDDM's RL-DDM defaults: its contaminants where p_outlier and rt_max are
        not given, and the first trial of each pair excluded.
    """

    design: str | None = None
    deadline: float | None = None
    missing: str | None = None
    q_init: float | None = None
    p_outlier: float | None = None
    rt_max: float | None = None
    min_rt: float | None = None
    exclude_first: bool = False
    hddm_compatible: bool = False

    @classmethod
    def from_namespace(cls, namespace) -> "SettingOptions":
        """The options of an argparse namespace; those a command lacks are not given."""
        return cls(**{f.name: getattr(namespace, f.name, f.default) for f in fields(cls)})


def with_settings(base: TaskDesign, deadline="design", missing: str | None = None, q_init: float | None = None,
                  p_outlier: float | None = None, rt_max: float | None = None) -> TaskDesign:
    """`base` with the settings given replacing its own.

    Parameters
    ----------
    base
        The design whose settings apply where none is given.
    deadline
        The response deadline in seconds, or None; ``"design"`` keeps the base's.
    missing
        ``"deadline"`` or ``"ignorable"``: what missing responses are.
    q_init, p_outlier, rt_max
        Initial Q-values, the contaminant probability and the contaminants' RT range; None
        keeps the base's.
    """
    changes = {name: value for name, value in (("q_init", q_init), ("p_outlier", p_outlier), ("rt_max", rt_max))
               if value is not None}
    if deadline != "design":
        changes.update(deadline=deadline, missing=missing, omission_rate=0.0)
    elif missing is not None:
        changes.update(missing=missing, omission_rate=0.0)
    return replace(base, **changes)


def _settings(options: SettingOptions, base: TaskDesign) -> TaskDesign:
    """The likelihood settings the options ask for, before exclusions."""
    given = [name for name in ("deadline", "missing", "q_init", "p_outlier", "rt_max")
             if getattr(options, name) is not None]
    if options.design:
        if given:
            raise ValueError(f"--design {options.design} sets the deadline, missing kind, q_init and contaminants; "
                             f"give it or --{', --'.join(name.replace('_', '-') for name in given)}, not both")
        return named_design(options.design)
    defaults = HDDM_DEFAULTS if options.hddm_compatible else {}
    p_outlier = options.p_outlier if options.p_outlier is not None else defaults.get("p_outlier")
    rt_max = options.rt_max if options.rt_max is not None else defaults.get("rt_max")
    deadline = "design" if options.deadline is None and options.missing is None else options.deadline
    return with_settings(base, deadline, options.missing, options.q_init, p_outlier, rt_max)


def prepare_study(study: Study, options: SettingOptions, base: TaskDesign) -> tuple[Study, TaskDesign, dict]:
    """The study, its likelihood settings and its exclusions, as the options say.

    Parameters
    ----------
    study
        The data as read.
    options
        What the user gave (:class:`SettingOptions`).
    base
        The settings where the options give none: a network's own design, or a plain
        :class:`TaskDesign` for a study fitted without one.

    Returns
    -------
    tuple
        The study with the exclusions applied (its ``excluded`` mask), the settings as a
        TaskDesign (``exclude_first`` true when the first trials were excluded), and the
        count of excluded trials per participant by rule.
    """
    if options.q_init is not None and study.q_init is not None:
        raise ValueError("--q-init given, but the data have a q_init column (which sets each participant's "
                         "initial Q-values); give one of them")
    design = _settings(options, base)
    excluded = {}
    if options.min_rt is not None:
        study, excluded[FAST_RESPONSE_RULE] = exclude_fast_responses(study, options.min_rt)
    exclude_first = options.exclude_first or options.hddm_compatible or design.exclude_first
    if exclude_first:
        study, excluded[FIRST_TRIAL_RULE] = exclude_first_trial_of_each_condition(study)
    return study, replace(design, exclude_first=bool(exclude_first)), excluded

