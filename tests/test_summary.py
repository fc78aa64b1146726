"""results.json's sections: each number under its history name, and old files read the same."""

from rmwnet_tf import selection, summary

HISTORY = [
    {"epoch": 1, "train/loss": 2.0, "train_seconds": 10.0},  # not evaluated
    {"epoch": 2, "test/accuracy": 0.50, "detection/auc": 0.70, "detection/auc_loss": 0.90, "meta/accuracy": 0.40,
     "meta/mae": 1.2, "train_seconds": 11.0, "images_per_second": 900.0},
    {"epoch": 4, "test/accuracy": 0.60, "detection/auc": 0.80, "detection/auc_loss": 0.80, "meta/accuracy": 0.55,
     "meta/mae": 1.0, "train_seconds": 12.0},
    {"epoch": 6, "test/accuracy": 0.60, "detection/auc": 0.75, "detection/auc_loss": 0.70, "meta/accuracy": 0.50,
     "meta/mae": 0.8, "fit/noisy_memorised": 0.9, "train_seconds": 13.0},
]


def test_sections_keep_the_history_names():
    s = summary.summarise(HISTORY)
    assert s["final"] == {"epoch": 6, "test/accuracy": 0.60, "detection/auc": 0.75, "detection/auc_loss": 0.70,
                          "meta/accuracy": 0.50, "meta/mae": 0.8, "fit/noisy_memorised": 0.9}
    # the highest value of each, ties to the earlier epoch (test accuracy 0.60 at epochs 4 and 6)
    assert s["best"] == {"test/accuracy": 0.60, "detection/auc": 0.80, "detection/auc_loss": 0.90}
    assert s["best_epoch"] == {"test/accuracy": 4, "detection/auc": 4, "detection/auc_loss": 2}
    assert s["selected"]["epoch"] == 4 and s["selected"]["test/accuracy"] == 0.60  # best meta/accuracy
    assert (s["selected_by"], s["selection_note"]) == ("meta_accuracy", None)
    assert s["train_seconds"] == 46.0
    flat = summary.flat(s)
    assert (flat["final/test/accuracy"], flat["best_epoch/test/accuracy"], flat["selected/epoch"]) == (0.60, 4, 4)
    assert flat["final/fit/noisy_memorised"] == 0.9 and "final/train_seconds" not in flat


def test_without_a_meta_set_nothing_is_selected_and_the_note_says_why():
    history = [{k: v for k, v in row.items() if not k.startswith("meta/")} for row in HISTORY]
    s = summary.summarise(history)
    assert (s["selected"], s["selected_by"], s["selection_note"]) == ({}, None, selection.NO_META_SET)
    assert summary.summarise([]) == {"final": {}, "best": {}, "best_epoch": {}, "selected": {}, "selected_by": None,
                                     "selection_note": selection.NO_META_SET, "train_seconds": 0.0}


def test_a_results_json_of_the_first_scheme_reads_with_the_same_numbers():
    old = {"epochs_completed": 6, "steps": 600, "test_accuracy_final": 0.60, "test_accuracy_best": 0.60,
           "best_epoch": 4, "selected_epoch": 4, "selected_by": "meta_accuracy", "test_accuracy_selected": 0.60,
           "selection_note": None, "detection_auc_final": 0.75, "detection_auc_best": 0.80,
           "detection_auc_loss_final": 0.70, "final": {"test/accuracy": 0.60}, "wall_seconds": 99.0,
           "train_images_per_second": 950.0, "history": HISTORY}
    new = summary.upgrade(old)
    flat = summary.flat(new)
    assert (flat["final/test/accuracy"], flat["best/test/accuracy"], flat["best_epoch/test/accuracy"]) == (0.60, 0.60, 4)
    assert (flat["selected/epoch"], flat["selected/test/accuracy"]) == (4, 0.60)
    assert (flat["final/detection/auc"], flat["best/detection/auc"], flat["final/detection/auc_loss"]) == (0.75, 0.80, 0.70)
    assert (new["images_per_second"], new["wall_seconds"], new["steps"]) == (950.0, 99.0, 600)
    assert not {"test_accuracy_final", "selected_epoch", "detection_auc_best", "train_images_per_second"} & set(new)
    assert new["best_epoch"] == {"test/accuracy": 4, "detection/auc": 4, "detection/auc_loss": 2}
    assert summary.upgrade(new) is new and summary.upgrade(None) is None
