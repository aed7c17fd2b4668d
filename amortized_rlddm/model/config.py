"""YAML configurations: the model variant, the task design (or a family of designs) and
the priors (plus, for training, the sections the training module reads)."""

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..resources import config_path
from .family import DesignFamily
from .priors import DUAL_RATE, SINGLE_RATE, SOFTMAX, SOFTMAX_DUAL, PriorSet, choice_only
from .task import TaskDesign

# Each model's parameters: the RL-DDM with one or two learning rates, and the choice-only
# softmax Q-learning models (no response times)
MODELS = {"single": SINGLE_RATE, "dual": DUAL_RATE, "softmax": SOFTMAX, "softmax-dual": SOFTMAX_DUAL}
_KNOWN_SECTIONS = {"model", "design", "family", "priors", "network", "training"}


@dataclass
class Config:
    """A validated configuration: model variant, task design (a `design` section) or family
    of designs (a `family` section), priors and the other sections."""

    model: str
    design: TaskDesign | DesignFamily
    priors: PriorSet
    sections: dict = field(default_factory=dict)  # the other top-level sections, verbatim

    @property
    def parameter_names(self):
        return MODELS[self.model]

    @property
    def is_family(self) -> bool:
        """Whether the config draws a design per participant (a network for many designs)."""
        return isinstance(self.design, DesignFamily)

    def to_dict(self):
        return {"model": self.model, ("family" if self.is_family else "design"): self.design.to_dict(),
                "priors": self.priors.to_dict(), **self.sections}


def config_from_dict(spec, source="config"):
    """Validate a configuration mapping; `source` names it in error messages."""
    if not isinstance(spec, dict):
        raise ValueError(f"{source}: expected a mapping at the top level")
    unknown = sorted(set(spec) - _KNOWN_SECTIONS)
    if unknown:
        raise ValueError(f"{source}: unknown section(s) {unknown}; expected some of {sorted(_KNOWN_SECTIONS)}")
    model = spec.get("model", "single")
    if model not in MODELS:
        raise ValueError(f"{source}: model '{model}' unknown, expected one of {sorted(MODELS)}")
    if "design" in spec and "family" in spec:
        raise ValueError(f"{source}: give either a 'design' section (one design) or a 'family' section "
                         "(designs drawn per participant), not both")
    try:
        if "family" in spec:
            design = DesignFamily.from_dict(spec["family"])
        else:
            design = TaskDesign.from_dict(spec.get("design"))
        priors = PriorSet.from_dict(spec.get("priors"), MODELS[model])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: {err}") from None
    deadline = "deadline" in design.missing if isinstance(design, DesignFamily) else design.deadline is not None
    if choice_only(MODELS[model]) and deadline:
        raise ValueError(f"{source}: the {model} model reads no response times, so its design has no deadline "
                         "(missing responses: none or ignorable)")
    sections = {k: v for k, v in spec.items() if k not in ("model", "design", "family", "priors")}
    return Config(model=model, design=design, priors=priors, sections=sections)


def load_config(config: str | Path) -> Config:
    """Read a YAML configuration (model, design, priors; network and training for `rlddm train`).

    Parameters
    ----------
    config
        A YAML file, or the name of a config shipped with the package (``"default"``: the
        shipped network's; ``"smoke"``: a tiny one for tests).

    Returns
    -------
    Config
        The validated configuration.
    """
    path = config_path(config)
    with open(path) as fh:
        try:
            spec = yaml.safe_load(fh)
        except yaml.YAMLError as err:
            raise ValueError(f"config file '{path}' is not valid YAML: {err}") from None
    return config_from_dict(spec, source=f"config file '{path}'")


def exact_fit_priors(config: str | Path | None, models) -> dict[str, PriorSet]:
    """Each model's priors for exact fits: a config's (a YAML file or a shipped name) where they
    name the model's parameters, the built-in priors for human data (docs/model.md) elsewhere."""
    given = load_config(config).priors.to_dict() if config else {}
    return {model: PriorSet.from_dict({k: v for k, v in given.items() if k in MODELS[model]}, MODELS[model])
            for model in models}
