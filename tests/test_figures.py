"""What the figures say about themselves: error bars named only when there are seeds to spread,
whole-epoch ticks, and losses of different models never drawn on one scale."""

import matplotlib.pyplot as plt

from genrec import figures
from genrec.figures import run_curves_figure, spread_title, whole_epochs


def test_error_bars_are_named_only_over_several_seeds():
    assert spread_title([1, 1]) == "One seed (no error bars)"
    assert spread_title([1, 3]) == "Mean over seeds, error bars: sample std"


def test_epoch_axes_tick_whole_epochs():
    figure, axis = plt.subplots()
    axis.plot([1, 2, 3], [0.1, 0.2, 0.3])
    whole_epochs(axis)
    figure.canvas.draw()
    assert all(float(tick).is_integer() for tick in axis.get_xticks())
    plt.close(figure)


def test_losses_of_different_models_are_drawn_relative_to_their_first_epoch(tmp_path, monkeypatch):
    drawn = {}

    def keep(figure, stem):
        drawn["axes"] = figure.axes
        plt.close(figure)
        return []

    monkeypatch.setattr(figures, "save_figure", keep)

    def record(epoch: int, loss: float) -> dict:
        return {"epoch": epoch, "loss": loss, "seconds": 1.0, "valid": {"ndcg@10": 0.1, "recall@10": 0.2}}

    one_model = {"PSID seed 1": [record(1, 4.0), record(2, 2.0)], "PSID seed 2": [record(1, 5.0), record(2, 4.0)]}
    run_curves_figure(one_model, tmp_path / "same")
    assert list(drawn["axes"][2].lines[0].get_ydata()) == [4.0, 2.0]
    run_curves_figure({**one_model, "SASRec seed 1": [record(1, 0.7), record(2, 0.35)]}, tmp_path / "mixed")
    loss = drawn["axes"][2]
    assert [list(line.get_ydata()) for line in loss.lines] == [[1.0, 0.5], [1.0, 0.8], [1.0, 0.5]]
    assert "relative" in loss.get_title()
