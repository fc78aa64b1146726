"""Gold-free checkpoint selection (rmwnet_tf/selection.py)."""
from rmwnet_tf import selection


def test_select_epoch_ties_criteria_and_missing_meta():
    history = [{"epoch": 1, "meta/accuracy": 0.5, "meta/mae": 0.9}, {"epoch": 2},
               {"epoch": 3, "meta/accuracy": 0.5, "meta/mae": 0.8},
               {"epoch": 4, "meta/accuracy": 0.4, "meta/mae": 0.7},
               {"epoch": 5, "meta/accuracy": 0.5, "meta/mae": 0.8}]
    assert selection.select_epoch(history) == 1  # accuracy ties go to the earlier epoch
    assert selection.select_epoch(history, "meta_mae") == 4
    assert selection.select_epoch([{"epoch": 1, "test/accuracy": 0.3}]) is None
