"""Evaluation report: per-class CSV against hand counts, confusion-matrix PNG from 1 to 200 classes."""
import csv

import matplotlib.image
import pytest
import torch
from matplotlib.figure import Figure

from video_sparse.engine.metrics import (classification_metrics, confusion_matrix, per_class_accuracy,
                                         plot_confusion_matrix, write_per_class)

# 9 videos, 4 classes; "swim" has no video. No ties within a row.
NAMES = ["walk", "run", "jump", "swim"]
PROBS = torch.tensor([
    [0.60, 0.30, 0.10, 0.00],  # walk -> walk
    [0.20, 0.50, 0.25, 0.05],  # walk -> run
    [0.15, 0.60, 0.20, 0.05],  # walk -> run
    [0.10, 0.20, 0.65, 0.05],  # walk -> jump
    [0.10, 0.70, 0.15, 0.05],  # run  -> run
    [0.10, 0.80, 0.06, 0.04],  # run  -> run
    [0.50, 0.30, 0.15, 0.05],  # jump -> walk
    [0.05, 0.15, 0.20, 0.60],  # jump -> swim
    [0.10, 0.20, 0.65, 0.05],  # jump -> jump
])
TARGET = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2])


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_per_class_csv_against_hand_counts(tmp_path):
    write_per_class(tmp_path / "per_class.csv", PROBS, TARGET, NAMES)
    # With 4 classes "top-5" is top-4: every video with a label is a hit.
    # jump's wrong predictions tie (walk once, swim once): the lower class id wins.
    assert read_csv(tmp_path / "per_class.csv") == [
        ["class_id", "class_name", "support", "top1_acc", "top5_acc", "predicted_as_most", "num_predicted"],
        ["0", "walk", "4", "0.250000", "1.000000", "run", "2"],
        ["1", "run", "2", "1.000000", "1.000000", "", "4"],
        ["2", "jump", "3", "0.333333", "1.000000", "walk", "2"],
        ["3", "swim", "0", "", "", "", "1"],
    ]


def test_per_class_accuracy_dicts():
    rows = per_class_accuracy(PROBS, TARGET, num_classes=4)
    assert [r["class_id"] for r in rows] == [0, 1, 2, 3]
    assert [r["support"] for r in rows] == [4, 2, 3, 0]
    assert [r["top1_correct"] for r in rows] == [1, 2, 1, 0]
    assert [r["top1_acc"] for r in rows] == [0.25, 1.0, 1 / 3, None]
    assert [r["top5_acc"] for r in rows] == [1.0, 1.0, 1.0, None]
    assert [r["predicted_as_most"] for r in rows] == [1, None, 0, None]
    assert [r["num_predicted"] for r in rows] == [2, 4, 2, 1]
    with pytest.raises(ValueError, match="num_classes"):
        per_class_accuracy(PROBS, TARGET, num_classes=5)


def test_top5_excludes_classes_ranked_sixth(tmp_path):
    # 6 classes: the true class is ranked 1st, 3rd, 6th (class 5) and 5th, 6th (class 0).
    probs = torch.tensor([
        [0.05, 0.08, 0.12, 0.20, 0.25, 0.30],
        [0.05, 0.30, 0.25, 0.12, 0.08, 0.20],
        [0.25, 0.30, 0.20, 0.12, 0.08, 0.05],
        [0.08, 0.30, 0.25, 0.20, 0.12, 0.05],
        [0.05, 0.30, 0.25, 0.20, 0.12, 0.08],
    ])
    target = torch.tensor([5, 5, 5, 0, 0])
    names = list("abcdef")
    write_per_class(tmp_path / "per_class.csv", probs, target, names)
    rows = read_csv(tmp_path / "per_class.csv")[1:]
    assert rows[0] == ["0", "a", "2", "0.000000", "0.500000", "b", "0"]
    assert rows[5] == ["5", "f", "3", "0.333333", "0.666667", "b", "1"]
    assert [r[6] for r in rows] == ["0", "4", "0", "0", "0", "1"]
    assert all(r[3:6] == ["", "", ""] for r in rows[1:5])
    # The per-class counts add up to the overall metrics of metrics.json.
    m = classification_metrics(probs, target)
    counted = per_class_accuracy(probs, target)
    assert sum(r["top1_correct"] for r in counted) / 5 == m["top1"] == 0.2
    assert sum(r["top5_correct"] for r in counted) / 5 == m["top5"] == 0.6


def test_accuracy_is_rounded_from_exact_counts(tmp_path):
    # 1/128 = 0.0078125 exactly: decimal half-up gives 0.007813 (a float's "%.6f" gives 0.007812).
    probs = torch.tensor([[0.9, 0.1]] + [[0.1, 0.9]] * 127)
    target = torch.zeros(128, dtype=torch.long)
    write_per_class(tmp_path / "per_class.csv", probs, target, ["x", "y"])
    assert read_csv(tmp_path / "per_class.csv")[1:] == [["0", "x", "128", "0.007813", "1.000000", "y", "1"],
                                                        ["1", "y", "0", "", "", "", "127"]]


def test_per_class_without_videos_and_bad_input(tmp_path):
    write_per_class(tmp_path / "per_class.csv", torch.empty(0, 3), torch.empty(0, dtype=torch.long), list("abc"))
    assert read_csv(tmp_path / "per_class.csv")[1:] == [[str(i), n, "0", "", "", "", "0"] for i, n in enumerate("abc")]
    with pytest.raises(ValueError, match="target ids"):
        per_class_accuracy(PROBS, torch.tensor([0, 1, 2, 4, 0, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="class names"):
        write_per_class(tmp_path / "x.csv", PROBS, TARGET, NAMES[:3])


@pytest.fixture
def saved_figures(monkeypatch):
    """The figures plot_confusion_matrix saves, to inspect their axes."""
    figures = []
    savefig = Figure.savefig

    def recording_savefig(self, *args, **kwargs):
        figures.append(self)
        return savefig(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording_savefig)
    return figures


def random_cm(c, seed=0):
    """Confusion matrix of 20 videos per class, 60% right; class 1 (when c > 2) has no video."""
    g = torch.Generator().manual_seed(seed)
    target = torch.arange(c).repeat(20)
    if c > 2:
        target[target == 1] = 0
    pred = torch.where(torch.rand(len(target), generator=g) < 0.6, target,
                       torch.randint(0, c, (len(target),), generator=g))
    return confusion_matrix(pred, target, c)


def read_png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return matplotlib.image.imread(path)


@pytest.mark.parametrize("c", [3, 60, 200])
def test_confusion_png(tmp_path, saved_figures, c):
    cm, names = random_cm(c), [f"class {i}" for i in range(c)]
    path = tmp_path / "confusion_matrix.png"
    plot_confusion_matrix(cm, names, path, top1=0.61234)
    image = read_png(path)
    height, width = image.shape[:2]
    assert 400 <= height <= 3100 and 400 <= width <= 3300
    assert path.stat().st_size < 3_000_000
    ax = saved_figures[0].axes[0]
    assert ax.get_title() == f"confusion matrix\ntop-1 61.23%, {20 * c} videos, {c} classes"
    # Row-normalised, and the class without videos is masked (drawn grey), not a row of zeros.
    shown = ax.images[0].get_array()
    assert shown.mask[1].all() and not shown.mask[0].any()
    assert shown[0].sum() == pytest.approx(1.0)
    if c == 3:
        assert [t.get_text() for t in ax.get_yticklabels()] == names
        assert [t.get_text() for t in ax.get_xticklabels()] == names
        assert len(ax.texts) == int((cm > 0).sum())  # one count per non-empty cell
    else:
        step = {60: 5, 200: 10}[c]
        assert list(ax.get_xticks()) == list(range(0, c, step)) == list(ax.get_yticks())
        assert [t.get_text() for t in ax.get_xticklabels()][:3] == ["0", str(step), str(2 * step)]
        assert ax.get_xlabel() == "predicted class id (names in per_class.csv)"
        assert ax.get_ylabel() == "true class id (names in per_class.csv)"
        assert not ax.texts
    assert len(saved_figures[0].axes) == 2  # the matrix and its colorbar


def test_confusion_png_grows_with_classes_up_to_a_cap(tmp_path):
    widths = {}
    for c in (3, 60, 200):
        plot_confusion_matrix(random_cm(c), [str(i) for i in range(c)], tmp_path / f"{c}.png")
        widths[c] = read_png(tmp_path / f"{c}.png").shape[1]
    assert widths[3] < widths[60] < widths[200] <= 3300


def test_confusion_png_one_class_and_empty(tmp_path, saved_figures):
    plot_confusion_matrix(torch.tensor([[4]]), ["only"], tmp_path / "one.png", "my title")
    assert read_png(tmp_path / "one.png").shape[0] >= 400
    ax = saved_figures[0].axes[0]
    assert ax.get_title() == "my title\n4 videos, 1 classes"
    assert [t.get_text() for t in ax.texts] == ["4"]
    plot_confusion_matrix(torch.zeros(3, 3, dtype=torch.long), list("abc"), tmp_path / "empty.png")
    assert saved_figures[1].axes[0].images[0].get_array().mask.all()
    with pytest.raises(ValueError, match="class names"):
        plot_confusion_matrix(torch.zeros(3, 3, dtype=torch.long), list("ab"), tmp_path / "bad.png")


@pytest.mark.parametrize("c", [5, 50])
def test_confusion_png_long_names(tmp_path, saved_figures, c):
    # Arbitrary user names: very long, with mathtext dollars, backslashes, underscores, empty.
    names = [f"{i} " + "a very long class name $\\frac{x}_y " * 8 for i in range(c)]
    names[-1] = ""
    plot_confusion_matrix(random_cm(c), names, tmp_path / "cm.png", top1=0.5)
    height, width = read_png(tmp_path / "cm.png").shape[:2]
    assert width <= 3300 and height <= 3300
    labels = [t.get_text() for t in saved_figures[0].axes[0].get_yticklabels()]
    assert len(labels) == c and labels[-1] == ""
    assert all(len(t) == 40 and t.endswith("\N{HORIZONTAL ELLIPSIS}") for t in labels[:-1])
    assert labels[0] == names[0][:39] + "\N{HORIZONTAL ELLIPSIS}"
