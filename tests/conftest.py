"""Shared fixtures and the `slow` marker.

The smoke network (training_configs/smoke.yaml: a few batches, for the plumbing) is trained
once per session. `pytest -m "not slow"` is the fast path for development: it leaves out every
test that trains a network, compiles a PyMC model, builds the wheel or runs a tutorial.
"""

from pathlib import Path

import pytest

SMOKE = "training_configs/smoke.yaml"

# tests that use these fixtures train or compile something: slow
SLOW_FIXTURES = {"smoke_checkpoint", "smoke_posterior", "smoke", "general_smoke", "installed_wheel", "participant",
                 "smoke_group"}
# modules every test of which is slow (NUTS fits, training runs, the tutorials)
SLOW_MODULES = {"test_compare.py", "test_pymc_model.py", "test_reliability.py", "test_tutorials.py",
                "test_diagnostics.py", "test_real_data.py", "test_model_comparison.py"}


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains a network, compiles a PyMC model, builds the wheel or runs a "
                                       "tutorial (left out by -m 'not slow')")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if Path(str(item.fspath)).name in SLOW_MODULES or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def smoke_checkpoint(tmp_path_factory):
    """The smoke network's checkpoint directory, trained once per session (not to be written to)."""
    from amortized_rlddm.amortized.training import train
    from amortized_rlddm.model.config import load_config

    out = tmp_path_factory.mktemp("smoke") / "net"
    train(load_config(SMOKE), out, verbose=0)
    return out


@pytest.fixture(scope="session")
def smoke_posterior(smoke_checkpoint):
    """The smoke network, loaded once per session."""
    from amortized_rlddm.amortized.posterior import AmortizedPosterior

    return AmortizedPosterior.load(smoke_checkpoint)
