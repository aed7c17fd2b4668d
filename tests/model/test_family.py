"""The family of designs a general network trains on: its sampler, the simulation of its
per-participant settings, the networks' inputs for them and the checks of data against it."""

import json
from dataclasses import replace

import numpy as np
import pytest

from amortized_rlddm.amortized.checkpoint import InferenceError
from amortized_rlddm.amortized.data_checks import refuse_outside_family
from amortized_rlddm.amortized.packing import design_condition, first_presentations, trial_features
from amortized_rlddm.data.exclusions import exclude_first_trial_of_each_condition
from amortized_rlddm.model import wiener
from amortized_rlddm.model.config import config_from_dict, load_config
from amortized_rlddm.model.designs import NAMED_DESIGNS
from amortized_rlddm.model.family import DesignFamily
from amortized_rlddm.model.priors import ParameterSpace
from amortized_rlddm.model.simulator import simulate, simulate_family
from amortized_rlddm.model.task import DesignSettings, Pair, TaskDesign

FAMILY = load_config("training_configs/general.yaml").design


def constant(n, **values):
    return {k: np.full(n, float(v)) for k, v in values.items()}


def test_the_shipped_general_config_is_a_family():
    config = load_config("training_configs/general.yaml")
    assert config.is_family and config.design.n_trials == (20, 400)
    assert config_from_dict(config.to_dict()).to_dict() == config.to_dict()


def test_family_layouts_keep_blocks_pairs_and_schedules():
    draw = FAMILY.sample(np.random.default_rng(3), 400)
    for i in range(400):
        n = draw.n_trials[i]
        block, pair, probs = draw.block[i, :n], draw.condition[i, :n], draw.arm_probs[i, :n]
        lengths = np.bincount(block)
        assert 1 <= lengths.size <= 6 and lengths.min() >= FAMILY.min_block_trials
        assert lengths.max() - lengths.min() <= 1 and (np.diff(block) >= 0).all()  # contiguous, nearly equal
        pairs = draw.n_pairs[i]
        assert 1 <= pairs <= 4 and pair.max() < pairs
        for b in range(lengths.size):
            counts = np.bincount(pair[block == b], minlength=pairs)
            blocked = (counts > 0).sum() == 1 and pairs > 1
            if not blocked and pairs > 1:
                assert counts.max() - counts.min() <= 1  # interleaved: as even as possible
        assert ((probs >= 0) & (probs <= 1)).all()


def test_family_shares_follow_the_config():
    draw = FAMILY.sample(np.random.default_rng(4), 6000)
    settings = draw.settings
    deadline = np.isfinite(settings.deadline)
    n = 6000
    for share, expected in ((deadline.mean(), 1 / 3), (settings.ignorable.mean(), 1 / 3),
                            ((settings.p_outlier > 0).mean(), FAMILY.lapses),
                            ((settings.q_init == 0).mean(), 0.5), (draw.exclude_first.mean(), FAMILY.exclude_first)):
        assert abs(share - expected) < 4 * np.sqrt(expected * (1 - expected) / n)
    assert (settings.deadline[deadline] >= 0.75).all() and (settings.deadline[deadline] <= 3.0).all()
    assert not (deadline & settings.ignorable).any()
    # omissions: every ignorable participant, and about half of the deadline ones
    assert (draw.omission_rate[~deadline & ~settings.ignorable] == 0).all()
    assert abs((draw.omission_rate[deadline] > 0).mean() - FAMILY.deadline_omissions) < 0.05


def test_family_pairs_have_complementary_or_independent_arms_and_fixed_reversals():
    family = replace(FAMILY, reversals=("fixed",), independent_arms=0.0, n_blocks=(1, 1), n_pairs=(1, 1),
                     n_trials=(100, 400))
    draw = family.sample(np.random.default_rng(5), 50)
    for i in range(50):
        probs = draw.arm_probs[i, :draw.n_trials[i]]
        assert np.allclose(probs.sum(1), 1.0)
        changes = np.flatnonzero(np.diff(probs[:, 0]) != 0) + 1
        assert changes.size  # 100+ trials, a period of at most 40
        assert len(set(np.diff(np.r_[0, changes]))) == 1  # the arms swap at a fixed period


def test_family_simulation_misses_the_deadline_as_the_diffusion_says():
    # alpha = 0 keeps Q equal, so every trial has drift 0: the miss probability of participant i
    # is omission + (1 - omission) ((1 - p_outlier) S(deadline - t0) + p_outlier (1 - deadline / rt_max)+)
    n, seed = 3000, 11
    params = constant(n, v=2.0, a=1.2, z=0.5, t0=0.3, alpha=0.0)
    study, settings = simulate_family(params, FAMILY, seed)
    draw = FAMILY.sample(np.random.default_rng(seed), n)  # the family draw simulate_family made
    assert np.array_equal(draw.settings.deadline, settings.deadline)
    survival = np.array([np.exp(wiener.log_survival(d - 0.3, 0.0, 1.2, 0.5)) if np.isfinite(d) else 0.0
                         for d in settings.deadline])
    late_contaminant = np.clip(1.0 - settings.deadline / settings.rt_max, 0.0, 1.0)
    response_missed = (1 - settings.p_outlier) * survival + settings.p_outlier * late_contaminant
    p_miss = draw.omission_rate + (1 - draw.omission_rate) * response_missed
    expected = (p_miss * study.n_trials).sum()
    spread = np.sqrt((p_miss * (1 - p_miss) * study.n_trials).sum())
    assert abs(study.missing.sum() - expected) < 4 * spread
    # responses lie before each participant's own deadline
    assert (np.nan_to_num(study.rt, nan=0.0) <= settings.deadline[:, None]).all()


def test_family_simulation_marks_omissions_and_first_trials_as_excluded():
    n = 600
    study, settings = simulate_family(constant(n, v=1.0, a=1.0, z=0.5, t0=0.2, alpha=0.3), FAMILY, seed=2)
    draw = FAMILY.sample(np.random.default_rng(2), n)
    deadline = np.isfinite(settings.deadline)
    unexcluded = replace(study, excluded=np.zeros_like(study.excluded))
    first = exclude_first_trial_of_each_condition(unexcluded)[0].excluded
    excluded_missing = (study.excluded & study.missing & ~first).any(1)
    assert not excluded_missing[~deadline].any()  # ignorable omissions need no mark
    assert excluded_missing[deadline & (draw.omission_rate > 0.03)].mean() > 0.9
    assert (study.excluded | ~first)[draw.exclude_first].all()
    others = first[~draw.exclude_first]  # excluded only by chance (an omission, a random exclusion)
    assert (study.excluded[~draw.exclude_first] & others).sum() < 0.1 * others.sum()
    assert np.array_equal(study.q_init, settings.q_init)


def test_design_settings_of_a_design_and_its_condition():
    design = TaskDesign(n_trials=30, deadline=1.5, p_outlier=0.05, rt_max=5.0, q_init=0.0)
    study = simulate(constant(3, v=1.0, a=1.0, z=0.5, t0=0.2, alpha=0.3), design, seed=1)
    settings = DesignSettings.of(design, study)
    assert np.allclose(design_condition(settings), [[0.0, 1.0, 1.5, 0.0, 0.5, 0.2]] * 3)
    plain = DesignSettings.of(TaskDesign(missing="ignorable", omission_rate=0.1), study)
    assert np.allclose(design_condition(plain), [[0.5, 0.0, 0.0, 1.0, 0.0, 0.0]] * 3)
    study.q_init = np.array([0.0, 0.5, 1.0])
    assert np.array_equal(DesignSettings.of(design, study).q_init, [0.0, 0.5, 1.0])  # the data's own win


def test_first_presentations_restart_with_every_block():
    design = TaskDesign(n_trials=40, n_blocks=2, pairs=[Pair((0.8, 0.2), None), Pair((0.6, 0.4), None)])
    study = simulate(constant(2, v=1.0, a=1.0, z=0.5, t0=0.2, alpha=0.3), design, seed=3)
    first = first_presentations(study)
    assert (first.sum(1) == 4).all()  # 2 pairs x 2 blocks
    for i in range(2):
        for b in range(2):
            for k in range(2):
                trials = np.flatnonzero((study.block[i] == b) & (study.condition[i] == k) & study.valid[i])
                assert first[i, trials[0]] and not first[i, trials[1:]].any()
    x, _ = trial_features(study, ["first", "excluded"], design)
    assert np.array_equal(x[..., 0], first.astype(np.float32)) and not x[..., 1].any()


def test_contaminated_participants_keep_the_prior_t0_bound():
    priors = load_config("training_configs/general.yaml").priors
    study = simulate(constant(2, v=1.0, a=1.0, z=0.5, t0=0.5, alpha=0.3), TaskDesign(n_trials=20), seed=1)
    space = ParameterSpace.given_data(priors, study, contaminated=np.array([True, False]))
    lo, hi = space.bounds[priors.names.index("t0")]
    assert hi[0] == priors.support("t0")[1] and hi[1] == np.nanmin(study.rt[1])


@pytest.mark.parametrize("name", sorted(NAMED_DESIGNS))
def test_the_validation_designs_lie_inside_the_family(name):
    design = NAMED_DESIGNS[name]
    study = simulate(constant(5, v=1.0, a=1.0, z=0.5, t0=0.2, alpha=0.3), design, seed=4)
    refuse_outside_family(study, FAMILY, design)


@pytest.mark.parametrize("design, change, words", [
    (TaskDesign(n_trials=500), {}, "500 trials"),
    (TaskDesign(n_trials=60, pairs=[Pair()] * 5), {}, "5 stimulus pairs"),
    (TaskDesign(n_trials=80, n_blocks=8), {}, "8 blocks"),
    (TaskDesign(n_trials=30, n_blocks=5), {}, "block of 6 trials"),
    (TaskDesign(q_init=0.3), {}, "q_init in"),
    (TaskDesign(deadline=5.0), {}, "deadline (5 s)"),
    (TaskDesign(p_outlier=0.2), {}, "p_outlier"),
    (TaskDesign(p_outlier=0.05, rt_max=30.0), {}, "rt_max"),
    (TaskDesign(deadline=1.0), {"deadline": None, "missing": None}, "say what they are"),
])
def test_data_outside_the_family_is_refused(design, change, words):
    study = simulate(constant(3, v=0.5, a=2.0, z=0.5, t0=0.3, alpha=0.3), design, seed=6)
    stated = replace(design, **change) if change else design
    with pytest.raises(InferenceError, match=words.replace("(", r"\(").replace(")", r"\)")):
        refuse_outside_family(study, FAMILY, stated)


def test_exclusions_beyond_the_family_rate_are_refused():
    design = TaskDesign(n_trials=200)
    study = simulate(constant(2, v=0.5, a=1.0, z=0.5, t0=0.3, alpha=0.3), design, seed=7)
    study.excluded[0, 50:60] = True  # 5%: within the family's spread
    refuse_outside_family(study, FAMILY, design)
    study.excluded[1, 10:60] = True  # 25%
    with pytest.raises(InferenceError, match="50 excluded responses"):
        refuse_outside_family(study, FAMILY, design)


@pytest.mark.parametrize("spec, words", [
    ({"n_trials": [400, 20]}, "n_trials"), ({"n_pairs": [1, 9]}, "n_pairs"), ({"q_init": [1.5]}, "q_init"),
    ({"missing": ["sometimes"]}, "missing"), ({"lapses": 2}, "lapses"), ({"colour": 1}, "unknown key"),
    ({"n_trials": [5, 40]}, "fill a block"),
])
def test_family_keys_are_checked(spec, words):
    with pytest.raises(ValueError, match=words):
        DesignFamily.from_dict(spec)


def test_a_config_gives_a_design_or_a_family_not_both():
    with pytest.raises(ValueError, match="not both"):
        config_from_dict({"design": {}, "family": {}})


@pytest.fixture(scope="module")
def general_smoke(tmp_path_factory):
    """A tiny general network (the general config's inputs, a family of 20-80 trials),
    trained for a few batches: for the plumbing, not for accuracy."""
    from amortized_rlddm.amortized.posterior import AmortizedPosterior
    from amortized_rlddm.amortized.training import train

    spec = load_config("training_configs/general.yaml").to_dict()
    spec["family"]["n_trials"] = [20, 80]
    spec["network"].update(n_trials=[20, 80], summary={"summary_dim": 8, "embed_dims": [16], "num_heads": [2],
                                                       "downsample": 2, "dropout": 0.0},
                           inference={"depth": 2, "subnet_kwargs": {"widths": [16, 16]}})
    spec["training"].update(epochs=1, batches_per_epoch=3, batch_size=16, validation_datasets=16, trial_buckets=2)
    out = tmp_path_factory.mktemp("general") / "net"
    train(config_from_dict(spec), out, verbose=0)
    AmortizedPosterior.load(out).write_ood_reference(out)
    return AmortizedPosterior.load(out)


def test_a_general_network_infers_each_design_with_its_settings(general_smoke):
    posterior = general_smoke
    assert posterior.serves_family
    design = TaskDesign(n_trials=60, deadline=1.5, omission_rate=0.05, q_init=0.0, p_outlier=0.05, rt_max=5.0)
    study = simulate(posterior.config.priors.sample(np.random.default_rng(0), 4), design, seed=1)
    tree = posterior.infer(study, draws=50, seed=0, deadline=1.5, q_init=0.0, p_outlier=0.05, rt_max=5.0)
    assert tree["posterior"]["t0"].shape == (1, 50, 4) and "importance" in tree.children
    # the settings reach the network: another deadline gives other draws
    other = posterior.infer(study, draws=50, seed=0, deadline=2.5, q_init=0.0, p_outlier=0.05, rt_max=5.0)
    assert not np.allclose(tree["posterior"]["v"].values, other["posterior"]["v"].values)
    with pytest.raises(InferenceError, match="deadline"):
        posterior.infer(study, draws=50, deadline=9.0)
    with pytest.raises(InferenceError, match="name the design"):
        posterior.design_with_trials(60)


def test_a_network_for_one_design_refuses_other_settings(general_smoke):
    from amortized_rlddm.amortized.posterior import AmortizedPosterior

    posterior = AmortizedPosterior.load("default")
    study = simulate(posterior.config.priors.sample(np.random.default_rng(0), 2), TaskDesign(), seed=1)
    for settings, words in (({"deadline": 1.5}, "deadline"), ({"p_outlier": 0.05}, "p_outlier"),
                            ({"q_init": 0.0}, "q_init")):
        with pytest.raises(InferenceError, match=words):
            posterior.infer(study, draws=50, **settings)


def test_the_design_table_reads_the_reports_and_judges_the_targets(tmp_path):
    from amortized_rlddm.validation.by_design import design_table

    def write(design, calibration, refined, above, alpha_diff, alpha_ratio, refined_diff, compared=True):
        folder = tmp_path / design
        for sub in ("diagnose", "check", "compare"):
            (folder / sub).mkdir(parents=True)
        params = ("v", "alpha")
        (folder / "diagnose" / "metrics.json").write_text(json.dumps({
            "parameters": {p: {"calibration_error": c} for p, c in zip(params, calibration)},
            "refined_parameters": {p: {"calibration_error": c} for p, c in zip(params, refined)}}))
        (folder / "check" / "check.json").write_text(json.dumps({"share_above_threshold": above}))
        rows = [{"parameter": "v", "median_abs_std_mean_difference": 0.05, "median_sd_ratio": 1.0},
                {"parameter": "alpha", "median_abs_std_mean_difference": alpha_diff, "median_sd_ratio": alpha_ratio}]
        refined_rows = [{"parameter": "v", "median_abs_std_mean_difference": refined_diff, "median_sd_ratio": 1.0},
                        {"parameter": "alpha", "median_abs_std_mean_difference": 0.01, "median_sd_ratio": 1.0}]
        comparison = {"summary": rows, "summary_refined": refined_rows}
        if compared:
            (folder / "compare" / "comparison.json").write_text(json.dumps(comparison))

    write("seed", (0.02, 0.04), (0.01, 0.02), 0.005, 0.08, 0.95, 0.03)
    write("deadline", (0.05, 0.01), (0.04, 0.01), 0.02, 0.2, 1.3, 0.06)
    write("stable300", (0.02, 0.02), (0.02, 0.01), 0.0, 0.5, 0.5, 0.5, compared=False)
    (tmp_path / "gershman" / "diagnose").mkdir(parents=True)  # no k-hat report: left out
    lines = design_table(tmp_path).splitlines()
    assert len(lines) == 5  # header, rule, the three designs with both reports (in NAMED_DESIGNS order)
    assert lines[2].startswith("| seed | 0.040 (alpha) / 0.020 (alpha) | 99.5% | alpha 0.080, 0.95 | 0.030 (v) | all |")
    assert lines[4].startswith("| deadline | 0.050 (v) / 0.040 (v) | 98.0%")
    assert lines[4].endswith("| not calibration, k-hat, raw alpha, refined |")
    assert lines[3] == ("| stable300 | 0.020 (v) / 0.020 (v) | 100.0% | not run yet | not run yet "
                        "| all (of calibration and k-hat) |")


def test_the_real_data_report_compares_with_the_exact_fits(general_smoke, tmp_path):
    import pandas as pd

    from amortized_rlddm.validation.real_amortized import real_amortized_report

    design = TaskDesign(n_trials=40, q_init=0.0)
    study = simulate(general_smoke.config.priors.sample(np.random.default_rng(1), 5), design, seed=2)
    # "exact fits" that equal the network's own refined moments, and a comparison favouring dual for some
    first = real_amortized_report({"single": general_smoke}, study, design, tmp_path / "none", tmp_path / "a",
                                  draws=60, seed=0)
    assert "agreement" not in first["single"]
    moments = pd.read_csv(tmp_path / "a" / "subjects_single.csv")
    exact = tmp_path / "exact"
    (exact / "single").mkdir(parents=True)
    names = general_smoke.parameter_names
    moments[["participant"] + [f"{n}_{m}_refined" for n in names for m in ("mean", "sd")]].rename(
        columns=lambda c: c.removesuffix("_refined")).to_csv(exact / "single" / "subjects.csv", index=False)
    pd.DataFrame({"participant": moments["participant"], "log_bayes_factor": [1.0, -1.0, 2.0, -2.0, 3.0],
                  "elpd_difference": [1.0, 1.0, 1.0, 1.0, 1.0]}).to_csv(exact / "model_comparison.csv", index=False)
    summary = real_amortized_report({"single": general_smoke, "dual": general_smoke}, study, design, exact,
                                    tmp_path / "b", draws=60, seed=0)
    refined = summary["single"]["agreement"]
    assert all(refined[f"refined/{n}"]["std_mean_difference"] < 1e-9 for n in names)
    assert all(abs(refined[f"refined/{n}"]["sd_ratio"] - 1) < 1e-9 for n in names)
    # the agreement where the corrected draws are trusted: those subjects alone
    subjects = pd.read_csv(tmp_path / "b" / "subjects_single.csv")
    trusted = int(subjects["refined_trusted"].sum())
    assert summary["single"]["trusted"] == trusted == summary["single"]["trusted_exact_subjects"]
    assert sum(summary["single"]["methods"].values()) == 5 and len(summary["single"]["untrusted"]) == 5 - trusted
    below = [key for key in refined if key.startswith("trusted/")]
    assert len(below) == (len(names) if trusted else 0)
    assert all(refined[key]["std_mean_difference"] < 1e-9 for key in below)
    report = (tmp_path / "b" / "report.md").read_text()
    assert f"**Trusted {trusted} of 5**" in report and f"{trusted} of them trusted after the correction" in report
    totals = summary["model_comparison"]  # one network twice: no evidence either way
    assert totals["log_bayes_factor_total"] == 0 and totals["dual_by_evidence"] == 0
    assert totals["same_verdict_by_evidence"] == 2 and totals["same_verdict_by_loo"] == 0
    assert totals["exact_log_bayes_factor_total"] == 3.0
    assert "Single vs dual" in (tmp_path / "b" / "report.md").read_text()


def test_extreme_unbounded_values_map_strictly_inside_the_support():
    """A flow's draw far in the tail (logistic beyond about 36) would round onto a bound that
    the model excludes (z = 1, found in a refinement of 10,000 proposals); it maps to the
    nearest value inside, where the likelihood is defined."""
    from amortized_rlddm.model.likelihood import loglik_draws

    priors = load_config("training_configs/general.yaml").priors
    space = ParameterSpace(priors)
    y = np.array([[0.0, 0.0, 40.0, 0.0, -40.0], [0.0, -800.0, -40.0, 800.0, 40.0]])
    values = space.inverse(y)
    for name in priors.names:
        lo, hi = priors.support(name)
        assert ((values[name] > lo) & (values[name] < hi)).all(), name
    assert np.isfinite(space.log_abs_det_jacobian(values)).all()
    study = simulate(constant(2, v=1.0, a=1.0, z=0.5, t0=0.2, alpha=0.3), TaskDesign(n_trials=20), seed=1)
    values["t0"] = np.array([0.1, 0.1])
    # evaluated, not refused: the first is finite, the second (z = 4e-18) underflows to -inf
    loglik = loglik_draws(study, {k: v[:, None] for k, v in values.items()})
    assert np.isfinite(loglik[0]).all() and not np.isnan(loglik).any()


def test_validate_designs_makes_the_table_from_the_steps_run(general_smoke, tmp_path):
    from amortized_rlddm.validation.by_design import validate_designs

    table = validate_designs(general_smoke, tmp_path, designs=["seed"], datasets=30, draws=100,
                             steps=("calibration",))
    lines = table.splitlines()
    assert len(lines) == 3 and lines[2].startswith("| seed |") and "not run yet" in lines[2]
    assert (tmp_path / "table.md").read_text() == table + "\n"
    for report in ("diagnose/metrics.json", "check/check.json"):
        assert (tmp_path / "seed" / report).is_file()
    assert not (tmp_path / "seed" / "compare").exists()
    with pytest.raises(ValueError, match="steps"):
        validate_designs(general_smoke, tmp_path, designs=["seed"], steps=("nuts",))
