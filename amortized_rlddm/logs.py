"""Quiet output: TensorFlow's and XLA's native log lines and the start-up notices of BayesFlow
and ArviZ are withheld unless RLDDM_TF_LOGS=1 (they report CUDA probing, oneDNN and backend
choices, nothing a user of this package can act on)."""

import contextlib
import logging
import os
import sys

SHOW_NATIVE_LOGS = os.environ.get("RLDDM_TF_LOGS", "0") == "1"
NOTICE_LOGGERS = ("bayesflow", "arviz")  # their imports log at INFO level


@contextlib.contextmanager
def native_logs_withheld():
    """Meanwhile, what native code writes to the process's stderr (file descriptor 2) goes to
    /dev/null and BayesFlow and ArviZ log warnings only; Python's own sys.stderr is flushed
    around it."""
    if SHOW_NATIVE_LOGS:
        yield
        return
    loggers = [logging.getLogger(name) for name in NOTICE_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
