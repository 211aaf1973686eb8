"""Every statistic of the reader study against an independent computation (statsmodels, scikit-learn)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, recall_score
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss
from statsmodels.stats.proportion import proportion_confint

from skingenbench.reader_study.answers import ReaderAnswers
from skingenbench.reader_study.reading_list import ManifestPin, Study, StudyItem
from skingenbench.reader_study.statistics import fleiss_kappa, study_report, wilson_interval


@pytest.mark.parametrize(
    "successes,total", [(0, 1), (1, 1), (0, 7), (7, 7), (3, 10), (17, 40), (55, 120), (1, 3)]
)
@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_wilson_matches_statsmodels(successes, total, confidence):
    low, high = proportion_confint(successes, total, alpha=1 - confidence, method="wilson")
    assert wilson_interval(successes, total, confidence) == pytest.approx((low, high), abs=1e-12)


def test_wilson_refuses_impossible_counts():
    for successes, total in ((1, 0), (-1, 5), (6, 5)):
        with pytest.raises(ValueError):
            wilson_interval(successes, total)


def test_fleiss_kappa_matches_statsmodels_on_random_tables():
    rng = np.random.default_rng(0)
    for _ in range(40):
        raters, items, categories = int(rng.integers(2, 7)), int(rng.integers(1, 30)), int(rng.integers(2, 5))
        ratings = rng.integers(0, categories, (items, raters))
        table, _ = aggregate_raters(ratings, n_cat=categories)
        expected = statsmodels_fleiss(table, method="fleiss")
        ours = fleiss_kappa(table.tolist())
        if math.isnan(expected):  # every rating in one category: kappa is undefined
            assert ours is None
        else:
            assert ours == pytest.approx(expected, abs=1e-12)


def test_fleiss_kappa_on_fleiss_1971_example_and_edge_cases():
    # Perfect agreement spread over both categories is 1; unanimity in one category is undefined.
    assert fleiss_kappa([[3, 0], [0, 3]]) == pytest.approx(1.0)
    assert fleiss_kappa([[3, 0], [3, 0]]) is None
    with pytest.raises(ValueError):
        fleiss_kappa([[2, 0], [1, 2]])  # unequal raters per item
    with pytest.raises(ValueError):
        fleiss_kappa([[1, 0]])  # a single rater


def _random_study(rng: random.Random, n: int = 30) -> Study:
    items = [
        StudyItem(
            f"img{i:02d}", f"k/{i}", "0" * 64, rng.choice(["real", "synthetic"]), rng.choice(["MEL", "NV"])
        )
        for i in range(n)
    ]
    pin = ManifestPin("file:///m.json", "0" * 64)
    return Study("s", 0, n, pin, pin, ["MEL", "NV", "BCC"], True, items)


def _random_readers(rng: random.Random, study: Study, names=("ann", "bob", "cy")) -> list[ReaderAnswers]:
    readers = []
    for name in names:
        answers = ReaderAnswers(study.study_id, name)
        for item in rng.sample(study.items, rng.randint(min(15, len(study.items)), len(study.items))):
            diagnosis = rng.choice([None, "MEL", "NV", "BCC"])
            answers.record(study, item.image_id, rng.choice(["real", "synthetic"]), diagnosis)
        readers.append(answers)
    return readers


def test_report_figures_match_scikit_learn_and_statsmodels():
    rng = random.Random(5)
    study = _random_study(rng)
    readers = _random_readers(rng, study)
    report = study_report(study, readers)
    truth = {item.image_id: item for item in study.items}

    def check(figures, answers):
        y_true = [truth[a.image_id].truth for a in answers]
        y_pred = [a.call for a in answers]
        assert figures["accuracy"]["value"] == pytest.approx(accuracy_score(y_true, y_pred))
        assert figures["sensitivity"]["value"] == pytest.approx(
            recall_score(y_true, y_pred, pos_label="synthetic")
        )
        assert figures["specificity"]["value"] == pytest.approx(
            recall_score(y_true, y_pred, pos_label="real")
        )
        correct = sum(t == p for t, p in zip(y_true, y_pred, strict=True))
        low, high = proportion_confint(correct, len(answers), alpha=0.05, method="wilson")
        assert (figures["accuracy"]["low"], figures["accuracy"]["high"]) == pytest.approx((low, high))
        for truth_kind, name in (("synthetic", "diagnosis_synthetic"), ("real", "diagnosis_real")):
            given = [a for a in answers if truth[a.image_id].truth == truth_kind and a.diagnosis]
            labels = [truth[a.image_id].label for a in given]
            assert figures[name]["total"] == len(given)
            assert figures[name]["value"] == pytest.approx(
                accuracy_score(labels, [a.diagnosis for a in given])
            )

    for reader in readers:
        check(report["readers"][reader.reader], reader.answers)
    check(report["pooled"], [a for r in readers for a in r.answers])

    common = [i.image_id for i in study.items if all(i.image_id in r.answered() for r in readers)]
    assert report["agreement"]["images"] == len(common) > 0
    ratings = np.array([[int(r.answered()[i].call == "synthetic") for r in readers] for i in common])
    table, _ = aggregate_raters(ratings, n_cat=2)
    assert report["agreement"]["fleiss_kappa"] == pytest.approx(statsmodels_fleiss(table, method="fleiss"))


def test_report_without_answers_or_with_one_reader():
    rng = random.Random(1)
    study = _random_study(rng, 10)
    empty = study_report(study, [])
    assert empty["pooled"]["accuracy"]["value"] is None and empty["indistinguishable"] is None
    (ann,) = _random_readers(rng, study, names=("ann",))
    one = study_report(study, [ann])
    assert one["agreement"] == {"readers": 1, "images": len(ann.answers), "fleiss_kappa": None}


def test_a_perfect_reader_tells_the_sets_apart():
    study = _random_study(random.Random(2), 20)
    reader = ReaderAnswers(study.study_id, "eagle")
    for item in study.items:
        reader.record(study, item.image_id, item.truth)
    report = study_report(study, [reader])
    assert report["pooled"]["accuracy"]["value"] == 1.0 and report["indistinguishable"] is False
    assert report["pooled"]["diagnosis_synthetic"]["total"] == 0  # no diagnosis given: no agreement figure
