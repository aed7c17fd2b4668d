"""Training configurations, priors and the task design (docs/model.md)."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import integrate, stats

from amortized_rlddm.model.config import config_from_dict, load_config
from amortized_rlddm.model.priors import (
    DEFAULT_PRIORS,
    Beta,
    Normal,
    PriorSet,
    TruncatedNormal,
    prior_from_dict,
    prior_to_dict,
)
from amortized_rlddm.model.task import TaskDesign

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / "training_configs" / "default.yaml"


@pytest.fixture(scope="module")
def default():
    return load_config(DEFAULT_CONFIG)


def _yaml(tmp_path, spec, name="config.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return path


def _default_spec():
    return yaml.safe_load(DEFAULT_CONFIG.read_text())


# ---------------------------------------------------------------------------------------------
# The default configuration
# ---------------------------------------------------------------------------------------------

def test_default_design(default):
    d = default.design
    assert d.n_trials == 60
    assert d.min_trials == d.max_trials == 60
    assert d.reward_probs == (0.8, 0.2)
    assert d.reversal_every == 12
    assert d.deadline is None
    assert d.n_blocks == 1
    assert d.q_init == 0.5
    assert d == TaskDesign()


def test_default_model_and_names(default):
    assert default.model == "single"
    assert tuple(default.parameter_names) == ("v", "a", "z", "t0", "alpha")
    assert tuple(default.priors.names) == ("v", "a", "z", "t0", "alpha")


def test_default_priors(default):
    p = default.priors.priors
    assert p["v"] == Normal(0.0, 2.0)
    assert p["a"] == TruncatedNormal(1.0, 0.5, 0.0, 5.0)
    assert p["z"] == Beta(2.0, 2.0)
    assert p["t0"] == TruncatedNormal(0.5, 0.25, 0.0, 1.5)
    assert p["alpha"] == Beta(2.0, 2.0)


def test_builtin_priors_hold_what_human_data_show():
    """The priors of a config that names none cover HDDM's published per-subject estimates on
    its RL-DDM data inside their central 99% (and the seed design keeps its own)."""
    ranges = {"v": (0.4, 12.0), "a": (1.1, 2.6), "t0": (0.15, 1.1), "alpha": (0.005, 0.7)}
    for name, (low, high) in ranges.items():
        prior = DEFAULT_PRIORS[name]
        assert prior.cdf(low) > 0.005 and prior.cdf(high) < 0.995, name
    for name in ("alpha_pos", "alpha_neg"):
        assert DEFAULT_PRIORS[name] == DEFAULT_PRIORS["alpha"]


def test_default_supports(default):
    ps = default.priors
    assert ps.support("v") == (-np.inf, np.inf)
    assert ps.support("a") == (0.0, 5.0)
    assert ps.support("t0") == (0.0, 1.5)
    assert ps.support("z") == (0.0, 1.0)
    assert ps.support("alpha") == (0.0, 1.0)


def test_default_yaml_design_equals_the_builtin_design(default):
    builtin = config_from_dict({})
    assert builtin.model == default.model and builtin.design == default.design
    assert builtin.priors.to_dict() == {n: prior_to_dict(DEFAULT_PRIORS[n]) for n in builtin.priors.names}


def test_config_to_dict_round_trip(default):
    again = config_from_dict(default.to_dict())
    assert again.design == default.design
    assert again.priors.priors == default.priors.priors
    assert again.model == default.model


def test_other_sections_kept_verbatim(tmp_path):
    spec = {"model": "single", "network": {"summary_dim": 16}, "training": {"epochs": 3}}
    cfg = load_config(_yaml(tmp_path, spec))
    assert cfg.sections == {"network": {"summary_dim": 16}, "training": {"epochs": 3}}


# ---------------------------------------------------------------------------------------------
# Dual-rate model
# ---------------------------------------------------------------------------------------------

def test_dual_rate_config(tmp_path):
    cfg = load_config(_yaml(tmp_path, {"model": "dual"}))
    assert cfg.model == "dual"
    names = tuple(cfg.parameter_names)
    assert "alpha_pos" in names and "alpha_neg" in names and "alpha" not in names
    assert set(names) == {"v", "a", "z", "t0", "alpha_pos", "alpha_neg"}
    assert tuple(cfg.priors.names) == names
    assert cfg.priors.support("alpha_pos") == (0.0, 1.0)
    assert cfg.priors.support("alpha_neg") == (0.0, 1.0)
    draws = cfg.priors.sample(np.random.default_rng(0), 100)
    assert set(draws) == set(names)


def test_dual_rate_config_with_custom_prior(tmp_path):
    spec = {"model": "dual", "priors": {"alpha_neg": {"dist": "beta", "a": 2.0, "b": 5.0}}}
    cfg = load_config(_yaml(tmp_path, spec))
    assert cfg.priors.priors["alpha_neg"] == Beta(2.0, 5.0)
    assert cfg.priors.priors["alpha_pos"] == DEFAULT_PRIORS["alpha_pos"]


def test_single_rate_config_rejects_dual_rate_priors(tmp_path):
    spec = {"model": "single", "priors": {"alpha_pos": {"dist": "beta", "a": 2, "b": 2}}}
    path = _yaml(tmp_path, spec)
    with pytest.raises(ValueError) as err:
        load_config(path)
    msg = str(err.value)
    assert "alpha_pos" in msg and str(path) in msg


def test_dual_rate_config_rejects_single_alpha_prior(tmp_path):
    spec = {"model": "dual", "priors": {"alpha": {"dist": "beta", "a": 2, "b": 2}}}
    with pytest.raises(ValueError, match="alpha"):
        load_config(_yaml(tmp_path, spec))


# ---------------------------------------------------------------------------------------------
# Bad configurations
# ---------------------------------------------------------------------------------------------

def _with(**changes):
    spec = _default_spec()
    for section, value in changes.items():
        if isinstance(value, dict) and isinstance(spec.get(section), dict):
            spec[section] = {**spec[section], **value}
        else:
            spec[section] = value
    return spec


BAD = {
    "unknown_design_key": (_with(design={"n_trial": 60}), ["unknown key", "n_trial"]),
    "unknown_prior_dist": (_with(priors={"v": {"dist": "cauchy", "loc": 0, "scale": 1}}),
                           ["'v'", "cauchy"]),
    "prior_for_absent_parameter": (_with(priors={"beta": {"dist": "beta", "a": 2, "b": 2}}),
                                   ["unknown parameter", "beta"]),
    "n_trials_zero_range": (_with(design={"n_trials": [0, 10]}), ["n_trials"]),
    "n_trials_zero": (_with(design={"n_trials": 0}), ["n_trials"]),
    "n_trials_reversed_range": (_with(design={"n_trials": [50, 10]}), ["n_trials"]),
    "negative_deadline": (_with(design={"deadline": -1.0}), ["deadline"]),
    "zero_deadline": (_with(design={"deadline": 0}), ["deadline"]),
    "plain_normal_on_a": (_with(priors={"a": {"dist": "normal", "mu": 1.0, "sigma": 0.5}}),
                          ["'a'", "support"]),
    "truncnormal_on_a_below_zero": (
        _with(priors={"a": {"dist": "truncnormal", "mu": 1.0, "sigma": 0.5,
                            "lower": -1.0, "upper": 5.0}}), ["'a'", "support"]),
    "normal_on_t0": (_with(priors={"t0": {"dist": "normal", "mu": 0.5, "sigma": 0.25}}),
                     ["'t0'", "support"]),
    "uniform_z_beyond_one": (_with(priors={"z": {"dist": "uniform", "lower": 0.0, "upper": 1.5}}),
                             ["'z'", "support"]),
    "unknown_model": (_with(model="triple"), ["model", "triple"]),
    "unknown_section": (_with(optimiser={"lr": 1e-3}), ["unknown section", "optimiser"]),
    "prior_without_dist": (_with(priors={"v": {"mu": 0, "sigma": 1}}), ["'v'", "dist"]),
    "prior_wrong_arguments": (_with(priors={"v": {"dist": "normal", "mean": 0, "sd": 1}}),
                              ["'v'"]),
    "empty_uniform_support": (_with(priors={"z": {"dist": "uniform", "lower": 0.5,
                                                  "upper": 0.5}}), ["'z'"]),
    "bad_reward_probs": (_with(design={"reward_probs": [0.8, 1.2]}), ["reward_probs"]),
    "bad_reversal_every": (_with(design={"reversal_every": 0}), ["reversal_every"]),
    "too_many_blocks": (_with(design={"n_trials": 5, "n_blocks": 6}), ["n_blocks"]),
    "bad_q_init": (_with(design={"q_init": 2.0}), ["q_init"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_raises_naming_problem(tmp_path, case):
    spec, needles = BAD[case]
    path = _yaml(tmp_path, spec)
    with pytest.raises(ValueError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg, msg
    for needle in needles:
        assert needle in msg, (needle, msg)


def test_top_level_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(path)


def test_invalid_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("design: {n_trials: [1, 2\n")
    with pytest.raises(ValueError, match="YAML"):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "absent.yaml")


# ---------------------------------------------------------------------------------------------
# Priors: sampling and densities
# ---------------------------------------------------------------------------------------------

def test_prior_samples_respect_support(default):
    draws = default.priors.sample(np.random.default_rng(123), 20_000)
    for name, x in draws.items():
        assert x.shape == (20_000,)
        lo, hi = default.priors.support(name)
        assert np.all(np.isfinite(x))
        assert np.all(x >= lo) and np.all(x <= hi), name
    assert np.all(draws["a"] > 0) and np.all(draws["t0"] >= 0)


def test_prior_samples_have_expected_moments(default):
    draws = default.priors.sample(np.random.default_rng(5), 40_000)
    assert abs(draws["v"].mean()) < 0.05 and abs(draws["v"].std() - 2.0) < 0.05
    assert abs(draws["z"].mean() - 0.5) < 0.01 and abs(draws["alpha"].mean() - 0.5) < 0.01
    # Beta(2, 2) variance: ab / ((a+b)^2 (a+b+1)) = 4 / 80
    assert abs(draws["z"].var() - 0.05) < 0.003
    a_mean = stats.truncnorm(-2, 8, 1.0, 0.5).mean()
    assert abs(draws["a"].mean() - a_mean) < 0.01


def test_prior_sampling_is_reproducible(default):
    x = default.priors.sample(np.random.default_rng(9), 50)
    y = default.priors.sample(np.random.default_rng(9), 50)
    for name in x:
        np.testing.assert_array_equal(x[name], y[name])


def _truncnorm_logpdf(x, mu, sigma, lo, hi):
    """Independent formula: normal density renormalised on [lo, hi]."""
    mass = stats.norm.cdf(hi, mu, sigma) - stats.norm.cdf(lo, mu, sigma)
    inside = (x >= lo) & (x <= hi)
    return np.where(inside, stats.norm.logpdf(x, mu, sigma) - np.log(mass), -np.inf)


def test_logpdf_matches_scipy(default):
    p = default.priors.priors
    x = np.array([-3.0, -0.5, 0.0, 0.01, 0.3, 0.5, 0.99, 1.0, 1.4, 2.0, 4.9, 5.0, 6.0])
    np.testing.assert_allclose(p["v"].logpdf(x), stats.norm.logpdf(x, 0.0, 2.0))
    np.testing.assert_allclose(p["a"].logpdf(x), _truncnorm_logpdf(x, 1.0, 0.5, 0.0, 5.0))
    np.testing.assert_allclose(p["t0"].logpdf(x), _truncnorm_logpdf(x, 0.5, 0.25, 0.0, 1.5))
    inner = (x > 0) & (x < 1)
    for name in ("z", "alpha"):
        got = p[name].logpdf(x)
        np.testing.assert_allclose(got[inner], np.log(6 * x[inner] * (1 - x[inner])))
        np.testing.assert_allclose(got[inner], stats.beta.logpdf(x[inner], 2, 2))
        assert np.all(got[(x < 0) | (x > 1)] == -np.inf)


def test_logpdf_minus_inf_outside_support(default):
    p = default.priors.priors
    assert p["a"].logpdf(-0.1) == -np.inf and p["a"].logpdf(5.1) == -np.inf
    assert p["t0"].logpdf(-0.1) == -np.inf and p["t0"].logpdf(1.6) == -np.inf
    assert np.isfinite(p["a"].logpdf(2.5)) and np.isfinite(p["t0"].logpdf(1.2))


@pytest.mark.parametrize("name", ["v", "a", "z", "t0", "alpha"])
def test_prior_density_integrates_to_one(default, name):
    prior = default.priors.priors[name]
    lo, hi = prior.support
    total, _ = integrate.quad(lambda x: np.exp(prior.logpdf(x)), lo, hi)
    assert abs(total - 1.0) < 1e-6, (name, total)


def test_truncated_normal_a_integrates_to_one_over_0_5(default):
    prior = default.priors.priors["a"]
    total, _ = integrate.quad(lambda x: np.exp(prior.logpdf(x)), 0.0, 5.0)
    assert total == pytest.approx(1.0, abs=1e-8)
    # Truncation matters: a plain Normal(1, 0.5) has about 2.3% mass below 0.
    plain, _ = integrate.quad(lambda x: stats.norm.pdf(x, 1.0, 0.5), 0.0, 5.0)
    assert plain < 0.98


def test_joint_logpdf_is_sum(default):
    rng = np.random.default_rng(2)
    draws = default.priors.sample(rng, 10)
    joint = default.priors.logpdf(draws)
    expected = sum(default.priors.priors[n].logpdf(draws[n]) for n in default.priors.names)
    np.testing.assert_allclose(joint, expected)
    assert joint.shape == (10,)


def test_prior_from_dict_round_trip():
    spec = {"dist": "truncnormal", "mu": 1.0, "sigma": 0.5, "lower": 0.0, "upper": 5.0}
    prior = prior_from_dict("a", spec)
    assert prior == TruncatedNormal(1.0, 0.5, 0.0, 5.0)


def test_priorset_requires_all_parameters():
    with pytest.raises(ValueError, match="alpha"):
        PriorSet({n: DEFAULT_PRIORS[n] for n in ("v", "a", "z", "t0")}, ("v", "a", "z", "t0", "alpha"))


# ---------------------------------------------------------------------------------------------
# Task design: schedule and blocks
# ---------------------------------------------------------------------------------------------

def test_arm_probabilities_reverse_every_12():
    design = TaskDesign()
    probs = design.arm_probabilities(np.arange(25))
    assert probs.shape == (25, 2)
    np.testing.assert_allclose(probs[:12], np.tile([0.8, 0.2], (12, 1)))
    np.testing.assert_allclose(probs[12:24], np.tile([0.2, 0.8], (12, 1)))
    np.testing.assert_allclose(probs[24], [0.8, 0.2])


def test_arm_probabilities_two_dimensional_positions():
    design = TaskDesign()
    pos = np.array([[0, 11, 12], [23, 24, 36]])
    probs = design.arm_probabilities(pos)
    assert probs.shape == (2, 3, 2)
    np.testing.assert_allclose(probs[..., 0], [[0.8, 0.8, 0.2], [0.2, 0.8, 0.2]])
    np.testing.assert_allclose(probs.sum(-1), 1.0)


def test_arm_probabilities_without_reversal():
    design = TaskDesign(reversal_every=None, reward_probs=(0.7, 0.3))
    probs = design.arm_probabilities(np.arange(40))
    np.testing.assert_allclose(probs, np.tile([0.7, 0.3], (40, 1)))


def test_block_layout_10_trials_3_blocks():
    design = TaskDesign(n_trials=10, n_blocks=3)
    block, pos = design.block_layout(np.array([10]), 10)
    np.testing.assert_array_equal(block[0], [0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(pos[0], [0, 1, 2, 3, 0, 1, 2, 0, 1, 2])
    assert np.bincount(block[0]).tolist() == [4, 3, 3]


def test_block_layout_padding_continues_last_block():
    design = TaskDesign(n_trials=(10, 13), n_blocks=3)
    block, pos = design.block_layout(np.array([10, 13]), 13)
    assert block.shape == pos.shape == (2, 13)
    np.testing.assert_array_equal(block[0], [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2])
    np.testing.assert_array_equal(pos[0], [0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 3, 4, 5])
    # 13 trials in 3 blocks: 5, 4, 4.
    np.testing.assert_array_equal(block[1], [0] * 5 + [1] * 4 + [2] * 4)
    np.testing.assert_array_equal(pos[1], [0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 1, 2, 3])


@pytest.mark.parametrize("n_blocks", [1, 2, 3, 4, 7])
def test_block_layout_general(n_blocks):
    design = TaskDesign(n_trials=(7, 40), n_blocks=n_blocks)
    counts = np.arange(7, 41)
    block, pos = design.block_layout(counts, 45)
    for i, n in enumerate(counts):
        b, p = block[i, :n], pos[i, :n]
        sizes = np.bincount(b, minlength=n_blocks)
        assert len(sizes) == n_blocks and sizes.sum() == n
        assert sizes.max() - sizes.min() <= 1
        assert np.all(np.diff(sizes) <= 0)  # the longer blocks come first
        assert np.all(np.diff(b) >= 0) and b[0] == 0 and b[-1] == n_blocks - 1
        starts = np.r_[True, b[1:] != b[:-1]]
        assert np.all(p[starts] == 0)
        assert np.all(p[~starts] == p[np.flatnonzero(~starts) - 1] + 1)
        assert np.all(block[i, n:] == n_blocks - 1)
        assert np.all(np.diff(np.r_[p[-1], pos[i, n:]]) == 1)


def test_design_from_dict_range():
    design = TaskDesign.from_dict({"n_trials": [40, 60]})
    assert design.n_trials == (40, 60)
    assert design.min_trials == 40 and design.max_trials == 60
    counts = design.sample_trial_counts(np.random.default_rng(0), 500)
    assert counts.min() >= 40 and counts.max() <= 60
    assert design.to_dict()["n_trials"] == [40, 60]


@pytest.mark.parametrize("section, kind", [("summary", "SetTransformer"), ("inference", "DiffusionModel")])
def test_network_kinds_outside_the_tested_ones_are_refused(section, kind):
    from amortized_rlddm.amortized.training import training_settings

    spec = load_config("training_configs/smoke.yaml").to_dict()
    spec["network"][section] = {"kind": kind}
    with pytest.raises(ValueError, match=f"network.{section}.kind"):
        training_settings(config_from_dict(spec, source="test"))


def test_the_closed_form_prior_densities_are_scipys():
    from scipy import stats

    from amortized_rlddm.model.priors import Beta, Normal, TruncatedNormal, Uniform

    x = np.concatenate([np.linspace(-3.0, 7.0, 2001), [0.0, 0.3, 1.0, 2.0, 5.0]])
    cases = {Normal(2.0, 5.0): stats.norm(2.0, 5.0),
             TruncatedNormal(1.5, 1.0, 0.3, 5.0): stats.truncnorm(-1.2, 3.5, 1.5, 1.0),
             TruncatedNormal(-3.0, 0.5, 2.0, 4.0): stats.truncnorm(10.0, 14.0, -3.0, 0.5),  # far in the tail
             Beta(2.0, 2.0): stats.beta(2.0, 2.0), Beta(0.5, 0.7): stats.beta(0.5, 0.7),
             Uniform(0.2, 3.0): stats.uniform(0.2, 2.8)}
    for prior, reference in cases.items():
        ours, theirs = prior.logpdf(x), reference.logpdf(x)
        np.testing.assert_array_equal(np.isfinite(ours), np.isfinite(theirs))
        np.testing.assert_allclose(ours[np.isfinite(theirs)], theirs[np.isfinite(theirs)], rtol=1e-12, atol=1e-12)
        assert np.ndim(prior.logpdf(1.0)) == 0
