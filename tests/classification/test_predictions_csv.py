from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skingenbench.services.classification.core.bootstrap import evaluate_predictions
from skingenbench.services.classification.core.predictions_csv import (
    read_predictions_csv,
    write_predictions_csv,
)
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.errors import InvalidArgument

ids_strategy = st.lists(
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12).filter(
        lambda s: s.strip()
    ),
    min_size=1,
    max_size=20,
    unique=True,
)


@settings(max_examples=40, deadline=None)
@given(ids=ids_strategy, data=st.data())
def test_round_trip_is_exact(ids, data):
    values = data.draw(
        st.lists(st.floats(0.0, 1.0), min_size=len(ids) * len(CLASSES), max_size=len(ids) * len(CLASSES))
    )
    probs = np.array(values).reshape(len(ids), len(CLASSES))
    read_ids, read_probs, classes = read_predictions_csv(write_predictions_csv(ids, probs))
    assert read_ids == ids and classes == CLASSES
    assert (read_probs == probs).all()


def test_layout_is_the_isic_one():
    text = write_predictions_csv(["ISIC_0000001", "ISIC_0000002"], [[1, 0, 0, 0, 0], [0.25, 0, 0, 0.75, 0]])
    assert text.splitlines() == [
        "image,NV,BCC,BKL,MEL,SCC",
        "ISIC_0000001,1.0,0.0,0.0,0.0,0.0",
        "ISIC_0000002,0.25,0.0,0.0,0.75,0.0",
    ]


def test_an_isic_ordered_file_is_reordered_to_the_expected_classes():
    text = "\ufeffimage,MEL,NV,BCC,BKL,SCC\nISIC_1,0.7,0.1,0.1,0.05,0.05\nISIC_2,0.1,0.6,0.1,0.1,0.1\n\n"
    ids, probs, classes = read_predictions_csv(text, classes=CLASSES)
    assert ids == ["ISIC_1", "ISIC_2"] and classes == CLASSES
    assert probs[0].tolist() == [0.1, 0.1, 0.05, 0.7, 0.05]
    result = evaluate_predictions([3, 0], probs, n_bootstrap=0)
    assert result["global"]["accuracy"]["value"] == 1.0
    with pytest.raises(InvalidArgument, match="expected"):
        read_predictions_csv(text, classes=("NV", "BCC", "BKL", "MEL", "AK"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("id,NV,MEL\na,0.5,0.5\n", "first column"),
        ("image,NV,NV\na,0.5,0.5\n", "unique"),
        ("image,NV,MEL\na,0.5\n", "line 2"),
        ("image,NV,MEL\na,0.5,high\n", "line 2"),
        ("image,NV,MEL\na,0.5,nan\n", "non-finite"),
        ("image,NV,MEL\na,0.5,0.5\na,0.4,0.6\n", "more than once"),
        ("image,NV,MEL\n,0.5,0.5\n", "non-empty"),
    ],
)
def test_malformed_files_are_refused(text, message):
    with pytest.raises(InvalidArgument, match=message):
        read_predictions_csv(text)


def test_writing_checks_ids_and_shape():
    with pytest.raises(InvalidArgument, match="shape"):
        write_predictions_csv(["a", "b"], np.full((3, 5), 0.2))
    with pytest.raises(InvalidArgument, match="more than once"):
        write_predictions_csv(["a", "a"], np.full((2, 5), 0.2))
    with pytest.raises(InvalidArgument, match="finite"):
        write_predictions_csv(["a"], [[np.inf, 0, 0, 0, 0]])
