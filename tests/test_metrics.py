"""metrics.py against scikit-learn and statsmodels, the bootstrap's exactness and coverage, and the edge cases."""
import numpy as np
import pytest
from scipy.stats import binom, norm
from sklearn.metrics import accuracy_score, balanced_accuracy_score, cohen_kappa_score, f1_score, roc_auc_score
from statsmodels.stats.proportion import proportion_confint

import metrics


def multiclass_data(rng, n=300, k=5):
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[labels]
    scores = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return labels, scores


def multilabel_data(rng, n=400, c=8, prevalence=None):
    prevalence = rng.uniform(0.02, 0.4, c) if prevalence is None else np.asarray(prevalence)
    c = len(prevalence)
    labels = (rng.random((n, c)) < prevalence).astype(int)
    scores = 1 / (1 + np.exp(-(rng.normal(size=(n, c)) + 2 * labels - 1.5)))
    return labels, scores


def binary_data(rng, n=300, prevalence=0.2, ties=False):
    labels = (rng.random(n) < prevalence).astype(int)
    scores = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.5 * labels - 1)))
    return labels, np.round(scores, 1) if ties else scores


def macro_auc_sklearn(labels, scores):
    both = [c for c in range(labels.shape[1]) if 0 < labels[:, c].sum() < len(labels)]
    return np.mean([roc_auc_score(labels[:, c], scores[:, c]) for c in both]) if both else np.nan


def sklearn_metric(metric, labels, preds, scores, num_classes):
    """The reference value from scikit-learn for one of our metric names."""
    if metric == "accuracy":
        return accuracy_score(labels, preds)
    if metric == "balanced_accuracy":
        return balanced_accuracy_score(labels, preds)
    if metric == "qwk":
        return cohen_kappa_score(labels, preds, weights="quadratic", labels=np.arange(num_classes))
    if metric in ("macro_f1", "micro_f1"):
        return f1_score(labels, preds, average=metric.split("_")[0], zero_division=np.nan)
    if metric == "roc_auc":
        return roc_auc_score(labels, scores) if 0 < labels.sum() < len(labels) else np.nan
    if metric == "macro_roc_auc":
        return macro_auc_sklearn(labels, scores)
    raise AssertionError(metric)


def close(a, b):
    return (np.isnan(a) and np.isnan(b)) or abs(a - b) < 1e-10


# ---- point metrics --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_point_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels, scores = multiclass_data(rng)
    preds = scores.argmax(1)
    assert metrics.accuracy(labels, preds) == pytest.approx(accuracy_score(labels, preds), abs=1e-12)
    assert metrics.balanced_accuracy(labels, preds) == pytest.approx(balanced_accuracy_score(labels, preds), abs=1e-12)
    assert metrics.quadratic_weighted_kappa(labels, preds, 5) == pytest.approx(
        cohen_kappa_score(labels, preds, weights="quadratic", labels=np.arange(5)), abs=1e-12)
    assert metrics.macro_f1(labels, preds) == pytest.approx(f1_score(labels, preds, average="macro"), abs=1e-12)

    y, s = binary_data(rng, ties=True)
    assert metrics.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert metrics.roc_auc(y, np.stack([1 - s, s], 1)) == pytest.approx(roc_auc_score(y, s), abs=1e-12)

    y, s = multilabel_data(rng)
    p = (s >= 0.5).astype(int)
    assert metrics.macro_f1(y, p) == pytest.approx(f1_score(y, p, average="macro", zero_division=np.nan), abs=1e-12)
    assert metrics.micro_f1(y, p) == pytest.approx(f1_score(y, p, average="micro"), abs=1e-12)
    assert metrics.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s, average="macro"), abs=1e-12)


def test_qwk_uses_grade_distances_when_a_grade_is_missing():
    labels, preds = np.array([0, 0, 2, 4, 4, 2]), np.array([0, 2, 2, 4, 2, 4])  # grades 1 and 3 never occur
    expected = cohen_kappa_score(labels, preds, weights="quadratic", labels=np.arange(5))
    assert metrics.quadratic_weighted_kappa(labels, preds, 5) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("task", ["multiclass", "ordinal", "binary", "multilabel"])
def test_score_reports_every_task_metric_primary_first(task):
    rng = np.random.default_rng(3)
    if task == "multilabel":
        labels, scores = multilabel_data(rng)
    elif task == "binary":
        labels, scores = binary_data(rng)
    else:
        labels, scores = multiclass_data(rng)
    values = metrics.score(task, labels, scores)
    assert list(values) == metrics.TASK_METRICS[task]
    assert metrics.TASK_METRICS[task][0] == metrics.PRIMARY_METRIC[task]
    preds = metrics.hard_predictions(task, scores)
    k = 2 if task == "binary" else scores.shape[1]
    for metric, value in values.items():
        assert close(value, sklearn_metric(metric, labels, preds, scores, k)), metric


def test_binary_accepts_both_score_shapes():
    labels, p = binary_data(np.random.default_rng(4))
    assert metrics.score("binary", labels, p) == metrics.score("binary", labels, np.stack([1 - p, p], 1))
    both = np.stack([1 - p, p], 1)
    assert np.array_equal(metrics.hard_predictions("binary", p), metrics.hard_predictions("binary", both))


def test_ordinal_regression_outputs_use_cut_points():
    outputs = np.array([-0.3, 0.49, 0.5, 1.7, 2.2, 3.49, 3.5, 9.0])
    assert metrics.hard_predictions("ordinal", outputs, num_classes=5).tolist() == [0, 0, 1, 2, 2, 3, 4, 4]
    assert metrics.hard_predictions("ordinal", outputs, thresholds=[1, 2, 3, 4]).tolist() == [0, 0, 0, 1, 2, 3, 3, 4]
    labels = np.array([0, 0, 1, 2, 2, 3, 4, 4])
    assert metrics.score("ordinal", labels, outputs, num_classes=5)["qwk"] == 1.0


# ---- intervals ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("successes,trials", [(0, 10), (10, 10), (3, 10), (57, 200), (0, 1), (1, 1), (999, 1000)])
@pytest.mark.parametrize("level", [0.95, 0.9])
def test_clopper_pearson_matches_statsmodels(successes, trials, level):
    expected = proportion_confint(successes, trials, alpha=1 - level, method="beta")
    assert metrics.clopper_pearson(successes, trials, level) == pytest.approx(expected, abs=1e-12)


def exactness_cases():
    rng = np.random.default_rng(5)
    labels, scores = multiclass_data(rng, n=120)
    yield "multiclass", labels, scores, None, None
    yield "ordinal", labels, scores, None, None
    outputs = labels + rng.normal(scale=0.8, size=len(labels))
    yield "ordinal", labels, outputs, np.array([0.4, 1.6, 2.5, 3.3]), 5
    y, s = binary_data(rng, n=150, ties=True)
    yield "binary", y, s, None, None
    y, s = multilabel_data(rng, n=150, prevalence=[0.01, 0.05, 0.3, 0.5, 0.0])
    yield "multilabel", y, s, np.array([0.3, 0.5, 0.6, 0.45, 0.5]), None


@pytest.mark.parametrize("task,labels,scores,thresholds,num_classes", list(exactness_cases()))
def test_vectorised_bootstrap_equals_metric_on_resampled_arrays(task, labels, scores, thresholds, num_classes):
    """Each resample's value is the scikit-learn metric of the explicitly resampled arrays, ties and repeats too."""
    preds = metrics.hard_predictions(task, scores, thresholds, num_classes)
    ranking = scores[:, 1] if task == "binary" and scores.ndim == 2 else scores
    k = num_classes or (2 if task == "binary" else scores.shape[1])
    indices = next(metrics.resample_indices(len(labels), n_boot=6, seed=11))
    assert indices.shape == (6, len(labels))
    for metric in metrics.TASK_METRICS[task]:
        values = metrics.resampled_metric(task, metric, labels, scores, indices, thresholds, num_classes)
        for row, drawn in zip(values, indices):
            assert close(row, sklearn_metric(metric, labels[drawn], preds[drawn], ranking[drawn], k)), metric


def test_bootstrap_is_seeded():
    labels, scores = multiclass_data(np.random.default_rng(6), n=200)
    first = metrics.score_with_intervals("ordinal", labels, scores, n_boot=300, seed=1)
    assert metrics.score_with_intervals("ordinal", labels, scores, n_boot=300, seed=1) == first
    other = metrics.score_with_intervals("ordinal", labels, scores, n_boot=300, seed=2)
    assert (other["qwk"]["low"], other["qwk"]["high"]) != (first["qwk"]["low"], first["qwk"]["high"])
    assert first["qwk"]["method"] == "bootstrap" and first["qwk"]["n_boot_used"] == 300
    correct = int((scores.argmax(1) == labels).sum())
    assert first["accuracy"]["method"] == "clopper-pearson"
    assert (first["accuracy"]["low"], first["accuracy"]["high"]) == metrics.clopper_pearson(correct, 200)
    assert first["qwk"]["low"] <= first["qwk"]["value"] <= first["qwk"]["high"]


def test_more_resamples_extend_fewer():
    """A run with more resamples starts with the resamples of a shorter run (here across a block boundary)."""
    labels, scores = binary_data(np.random.default_rng(7), n=500)
    few = metrics.bootstrap_distribution("binary", labels, scores, metrics=["roc_auc"], n_boot=5000, seed=3)
    many = metrics.bootstrap_distribution("binary", labels, scores, metrics=["roc_auc"], n_boot=9000, seed=3)
    assert np.array_equal(few["roc_auc"], many["roc_auc"][:5000])


def coverage(simulate, truth, key, repetitions=200, n_boot=500):
    rng = np.random.default_rng(8)
    hits = 0
    for repetition in range(repetitions):
        task, labels, scores = simulate(rng)
        interval = metrics.score_with_intervals(task, labels, scores, n_boot=n_boot, seed=repetition)[key]
        hits += interval["low"] <= truth <= interval["high"]
    return hits / repetitions


def test_auc_interval_covers_the_true_auc():
    shift = 1.0  # positives ~ N(shift, 1), negatives ~ N(0, 1): AUC = Phi(shift / sqrt(2))

    def simulate(rng):
        labels = (rng.random(200) < 0.3).astype(int)
        return "binary", labels, rng.normal(size=200) + shift * labels

    assert 0.88 <= coverage(simulate, norm.cdf(shift / np.sqrt(2)), "roc_auc") <= 0.99


def test_qwk_interval_covers_the_true_kappa():
    grade_p = np.array([0.4, 0.15, 0.2, 0.15, 0.1])
    error_p = np.array([0.15, 0.7, 0.15])  # prediction = grade - 1, grade, grade + 1, clipped to 0..4
    joint = np.zeros((5, 5))
    for grade, pg in enumerate(grade_p):
        for error, pe in zip((-1, 0, 1), error_p):
            joint[grade, min(max(grade + error, 0), 4)] += pg * pe
    weights = (np.arange(5)[:, None] - np.arange(5)) ** 2
    true_qwk = 1 - (weights * joint).sum() / (weights * np.outer(joint.sum(1), joint.sum(0))).sum()

    def simulate(rng):
        labels = rng.choice(5, size=250, p=grade_p)
        preds = np.clip(labels + rng.choice([-1, 0, 1], size=250, p=error_p), 0, 4)
        return "ordinal", labels, np.eye(5)[preds]  # one-hot scores: argmax is the prediction

    assert 0.88 <= coverage(simulate, true_qwk, "qwk", repetitions=150) <= 0.99


@pytest.mark.parametrize("trials", [20, 250])
def test_clopper_pearson_covers_every_true_accuracy(trials):
    """Exact coverage, summed over the binomial distribution: never below the level, for any true accuracy."""
    k = np.arange(trials + 1)
    intervals = np.array([metrics.clopper_pearson(int(s), trials) for s in k])
    for p in np.linspace(0.01, 0.99, 25):
        inside = (intervals[:, 0] <= p) & (p <= intervals[:, 1])
        assert binom.pmf(k, trials, p)[inside].sum() >= 0.95


# ---- edge cases -----------------------------------------------------------------------------------------------

def test_resamples_without_a_positive_are_dropped_and_counted():
    labels = np.zeros(30, int)
    labels[0] = 1
    scores = np.linspace(0, 1, 30)[::-1]
    result = metrics.score_with_intervals("binary", labels, scores, n_boot=2000, seed=0)["roc_auc"]
    drawn = np.concatenate([(block == 0).any(axis=1) for block in metrics.resample_indices(30, 2000, 0)])
    assert result["n_boot_dropped"] == (~drawn).sum() > 0  # P(no positive drawn) = (29/30)^30, about 36%
    assert result["n_boot_used"] == drawn.sum()
    assert result["value"] == 1.0 and result["low"] == result["high"] == 1.0


def test_all_predictions_equal():
    rng = np.random.default_rng(9)
    labels = (rng.random(100) < 0.3).astype(int)
    constant = np.full(100, 0.7)
    assert metrics.roc_auc(labels, constant) == 0.5
    assert metrics.score_with_intervals("binary", labels, constant, n_boot=200)["roc_auc"]["low"] == 0.5
    grades = rng.integers(0, 5, 100)
    assert metrics.quadratic_weighted_kappa(grades, np.full(100, 2)) == 0.0
    assert np.isnan(metrics.quadratic_weighted_kappa(np.full(10, 3), np.full(10, 3)))  # one grade only: undefined


def test_multilabel_class_without_positives():
    """A class with no positives and no predicted positives is left out of macro F1 (zero_division=nan)."""
    labels, scores = multilabel_data(np.random.default_rng(10), n=200, prevalence=[0.2, 0.3, 0.1, 0.0])
    scores[:, 3] = 0.1  # never predicted
    preds = metrics.hard_predictions("multilabel", scores)
    expected = f1_score(labels, preds, average="macro", zero_division=np.nan)
    assert metrics.macro_f1(labels, preds) == pytest.approx(expected, abs=1e-12)
    assert metrics.macro_f1(labels, preds) == pytest.approx(f1_score(labels[:, :3], preds[:, :3], average="macro"))
    scores[0, 3] = 0.9  # one false positive: now F1 = 0 for that class, and it counts
    preds = metrics.hard_predictions("multilabel", scores)
    others = f1_score(labels[:, :3], preds[:, :3], average=None)
    assert metrics.macro_f1(labels, preds) == pytest.approx(others.sum() / 4)
    assert metrics.choose_thresholds(labels, scores)[3] == metrics.DEFAULT_THRESHOLD
    assert metrics.score("multilabel", labels, scores)["macro_roc_auc"] == pytest.approx(
        macro_auc_sklearn(labels, scores), abs=1e-12)


# ---- decisions fitted on validation ---------------------------------------------------------------------------

def test_thresholds_chosen_on_val_are_applied_unchanged():
    rng = np.random.default_rng(12)
    val_labels, val_scores = multilabel_data(rng, n=300, c=5)
    test_labels, test_scores = multilabel_data(rng, n=300, c=5)
    thresholds = metrics.fit_decision("multilabel", val_labels, val_scores)
    assert np.array_equal(thresholds, metrics.choose_thresholds(val_labels, val_scores))
    for c in range(5):  # no cut of the validation scores gives a better F1 for that class
        y, s = val_labels[:, c], val_scores[:, c]
        cuts = s >= np.unique(s)[:, None]  # (cut, sample)
        best = (2 * (cuts & (y == 1)).sum(1) / (cuts.sum(1) + y.sum())).max()
        assert f1_score(y, s >= thresholds[c]) == pytest.approx(best)
    reported = metrics.score("multilabel", test_labels, test_scores, thresholds)["macro_f1"]
    assert reported == pytest.approx(f1_score(test_labels, test_scores >= thresholds, average="macro"))
    assert not np.allclose(thresholds, metrics.choose_thresholds(test_labels, test_scores))


def test_cut_points_improve_qwk_of_shifted_regression_outputs():
    rng = np.random.default_rng(13)

    def outputs(labels):  # a regression head that under-predicts high grades
        return 0.6 * labels + 0.4 + rng.normal(scale=0.35, size=len(labels))

    val_labels, test_labels = rng.integers(0, 5, 400), rng.integers(0, 5, 400)
    val_outputs, test_outputs = outputs(val_labels), outputs(test_labels)
    cuts = metrics.fit_decision("ordinal", val_labels, val_outputs, num_classes=5)
    assert cuts.shape == (4,) and np.all(np.diff(cuts) >= 0)
    default = metrics.score("ordinal", test_labels, test_outputs, num_classes=5)["qwk"]
    fitted = metrics.score("ordinal", test_labels, test_outputs, cuts, num_classes=5)["qwk"]
    assert fitted > default + 0.05
    assert metrics.fit_decision("ordinal", val_labels, np.eye(5)[val_labels], num_classes=5) is None


# ---- paired comparison ----------------------------------------------------------------------------------------

def test_paired_difference_of_a_run_with_itself_is_exactly_zero():
    labels, scores = binary_data(np.random.default_rng(14))
    result = metrics.paired_difference("binary", "roc_auc", labels, scores, scores, n_boot=500)
    assert (result["value"], result["low"], result["high"], result["p_value"]) == (0.0, 0.0, 0.0, 1.0)


def test_paired_difference_detects_a_better_run():
    rng = np.random.default_rng(15)
    labels = (rng.random(400) < 0.4).astype(int)
    good = rng.normal(size=400) + 2.0 * labels
    poor = rng.normal(size=400) + 0.5 * labels
    result = metrics.paired_difference("binary", "roc_auc", labels, good, poor, n_boot=1000, seed=1)
    assert result["value"] == pytest.approx(metrics.roc_auc(labels, good) - metrics.roc_auc(labels, poor))
    assert 0 < result["low"] <= result["value"] <= result["high"] and result["p_value"] < 0.01


# ---- errors ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call,message", [
    (lambda: metrics.score("regression", [0, 1], [[0.2, 0.8], [0.6, 0.4]]), "task must be one of"),
    (lambda: metrics.score("multiclass", [0, 1, 1], [[0.2, 0.8], [0.6, 0.4]]), "labels has 3 samples"),
    (lambda: metrics.score("multiclass", [0, 2], [[0.2, 0.8], [0.6, 0.4]]), "labels must lie in 0..1"),
    (lambda: metrics.score("binary", [0, 1], [0.2, np.nan]), "scores has 1 NaN/inf"),
    (lambda: metrics.score("multiclass", [0, 1], [[0.2, 0.8], [0.6, 0.4]], thresholds=[0.5]), "takes no thresholds"),
    (lambda: metrics.score("ordinal", [0, 1], [0.2, 1.4]), "need num_classes or cut points"),
    (lambda: metrics.score("multilabel", [[0, 1]], [[0.2, 0.8]], thresholds=[0.5]), "thresholds must have shape"),
    (lambda: metrics.paired_difference("binary", "qwk", [0, 1], [0.2, 0.8], [0.3, 0.7]), "not reported for task"),
    (lambda: metrics.clopper_pearson(5, 3), "successes <= trials"),
])
def test_bad_input_is_rejected_with_a_clear_message(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_intervals_of_many_prediction_sets_equal_each_set_scored_alone():
    """Shared resamples across models (analyze.py's path) give each model exactly its own score_with_intervals."""
    rng = np.random.default_rng(12)
    sets = [multilabel_data(rng, n=300, c=6) for _ in range(3)] + [multilabel_data(rng, n=250, c=6)]
    with_thresholds = [(y, s, metrics.choose_thresholds(y, s)) for y, s in sets]
    together = metrics.intervals("multilabel", iter(with_thresholds), metrics=["macro_f1", "micro_f1"], n_boot=700,
                                 seed=4)
    for (y, s, t), result in zip(with_thresholds, together):
        alone = metrics.score_with_intervals("multilabel", y, s, t, n_boot=700, seed=4,
                                             metrics=["macro_f1", "micro_f1"])
        assert result == alone and set(result) == {"macro_f1", "micro_f1"}


def test_sums_beyond_float32_exactness_stay_exact():
    """QWK's weighted sums exceed 2**24 here (grade**2 times 1.2 million samples): they are computed in float64."""
    rng = np.random.default_rng(13)
    labels = rng.integers(0, 5, 1_200_000)
    preds = np.where(rng.random(len(labels)) < 0.6, labels, rng.integers(0, 5, len(labels)))
    scores = np.eye(5)[preds]
    ours = metrics.score("ordinal", labels, scores, metrics=["qwk", "accuracy"])
    assert ours["qwk"] == pytest.approx(cohen_kappa_score(labels, preds, weights="quadratic"), abs=1e-12)
    assert ours["accuracy"] == np.mean(labels == preds)
