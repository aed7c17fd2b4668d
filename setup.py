"""The wheel's packages: every package found under amortized_rlddm/ (so a new subpackage cannot
be left out) and the shipped networks and configs, which pyproject.toml maps into the package
from the repository's top level. Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["amortized_rlddm", "amortized_rlddm.*"])
      + ["amortized_rlddm.checkpoints", "amortized_rlddm.training_configs"])
