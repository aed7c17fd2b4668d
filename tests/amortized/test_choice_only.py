"""Networks for the choice-only models: a softmax network trains on simulations without RTs
and its corrected posteriors are trusted; the RL-DDM networks refuse data without RTs."""

from dataclasses import replace

import numpy as np
import pytest

from amortized_rlddm.amortized.checkpoint import InferenceError
from amortized_rlddm.amortized.posterior import AmortizedPosterior
from amortized_rlddm.model.config import config_from_dict, load_config
from amortized_rlddm.model.simulator import simulate
from amortized_rlddm.model.task import TaskDesign


def test_an_rl_ddm_network_refuses_choices_without_rts():
    study = simulate({"alpha": [0.3, 0.6], "beta": [3.0, 6.0]}, TaskDesign(n_trials=60), seed=0)
    with pytest.raises(InferenceError, match="no response times"):
        AmortizedPosterior.load("default").infer(study, draws=50)


def test_a_choice_only_config_with_rts_or_a_deadline_is_refused():
    from amortized_rlddm.amortized.training import training_settings

    spec = load_config("training_configs/softmax.yaml").to_dict()
    with pytest.raises(ValueError, match="no deadline"):
        config_from_dict({**spec, "family": {**spec["family"], "missing": ["none", "deadline"]}})
    with_rt = {**spec, "network": {**spec["network"], "features": ["choice", "rt", "reward", "missing"]}}
    with pytest.raises(ValueError, match="reads no response times"):
        training_settings(config_from_dict(with_rt))


@pytest.mark.slow
def test_a_softmax_network_trains_on_choices_alone_and_its_corrected_posteriors_are_trusted(tmp_path):
    from amortized_rlddm.amortized.training import train

    spec = load_config("training_configs/softmax.yaml").to_dict()
    spec["training"] = {**spec["training"], "epochs": 1, "batches_per_epoch": 20, "validation_datasets": 50}
    train(config_from_dict(spec), tmp_path / "net", verbose=0)
    posterior = AmortizedPosterior.load(tmp_path / "net")
    truth = {"alpha": np.array([0.2, 0.5, 0.8]), "beta": np.array([2.0, 5.0, 12.0])}
    study = simulate(truth, TaskDesign(n_trials=150, pairs=[{"reward_probs": [0.8, 0.2], "reversal_every": 30}]),
                     seed=4)
    assert not study.has_rt
    tree = posterior.infer(study, draws=300, seed=2, refine=True)
    assert tree["importance"]["trusted"].values.all()
    assert set(tree["posterior"].data_vars) == {"alpha", "beta"}
    assert not tree["data_checks"]["out_of_distribution"].values.any()
    # the exact posterior, however rough the one-epoch network: each truth inside its 99% interval
    for name, values in truth.items():
        low, high = np.quantile(tree["posterior"][name].values[0], [0.005, 0.995], axis=0)
        assert ((low < values) & (values < high)).all(), name
    # RTs given to a choice-only model are ignored, and said so: the same draws as without them
    raw = posterior.infer(study, draws=100, seed=3)
    timed = replace(study, rt=np.where(study.choice >= 0, 0.5, np.nan))
    with_rts = posterior.infer(timed, draws=100, seed=3)
    np.testing.assert_array_equal(with_rts["posterior"]["alpha"].values, raw["posterior"]["alpha"].values)
    assert "response times were ignored" in with_rts["posterior"].attrs["note"] and "note" not in raw["posterior"].attrs
    # a participant whose every response chose one arm is flagged (weakly identified), not refused
    one_arm = replace(study, choice=np.where(study.choice >= 0, 1, study.choice).astype(np.int8))
    assert posterior.infer(one_arm, draws=100, seed=3)["data_checks"]["one_arm_only"].values.all()
    assert not raw["data_checks"]["one_arm_only"].values.any()


@pytest.mark.parametrize("model, truth", [
    ("softmax", {"alpha": np.array([0.3, 0.7]), "beta": np.array([4.0, 9.0])}),
    ("softmax-dual", {"alpha_pos": np.array([0.3, 0.8]), "alpha_neg": np.array([0.3, 0.1]),
                      "beta": np.array([4.0, 9.0])})])
def test_the_shipped_choice_only_networks_serve_choices_alone(model, truth):
    from amortized_rlddm.amortized.checkpoint import checkpoint_for_model

    assert checkpoint_for_model("general", model) == model
    posterior = AmortizedPosterior.load(model)
    assert posterior.serves_family and posterior.parameter_names == tuple(truth)
    study = simulate(truth, TaskDesign(n_trials=120, reward_probs=(0.75, 0.25), reversal_every=30), seed=5)
    tree = posterior.infer(study, draws=300, seed=1, refine=True)
    assert tree["importance"]["trusted"].values.all()
    for name, values in truth.items():
        low, high = np.quantile(tree["posterior"][name].values[0], [0.005, 0.995], axis=0)
        assert ((low < values) & (values < high)).all(), name


@pytest.mark.slow
def test_the_inference_benchmark_times_a_family_network_on_a_named_design():
    from amortized_rlddm.benchmarks import bench_infer

    with pytest.raises(ValueError, match="--design"):
        bench_infer("softmax", many=5, repeats=1)
    result = bench_infer("softmax", draws=50, many=5, repeats=1, design="gallery")
    for key in ("one_ms", "many_s", "unchecked_one_ms", "unchecked_many_s", "corrected_one_ms", "corrected_many_s"):
        assert result[key] > 0, key
