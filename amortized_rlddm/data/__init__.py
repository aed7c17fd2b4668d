"""The data every stage shares: the Study, and reading and writing it as CSV or DataFrame."""
