"""The data every stage shares: the Study, reading and writing it as CSV or DataFrame, and the
exclusion rules."""

from .exclusions import exclude_fast_responses, exclude_first_trial_of_each_condition
from .io import CONVENTIONS, DataError, read_study, write_study
from .study import Study

__all__ = ["CONVENTIONS", "DataError", "Study", "exclude_fast_responses", "exclude_first_trial_of_each_condition",
           "read_study", "write_study"]
