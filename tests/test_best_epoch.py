"""The best epoch: its weights evaluated (``checkpoint: best``), saved (``save_model: best``), both, or neither;
across fine_tune's two phases, and while ``finetune: head`` trains the head alone."""

from __future__ import annotations

import pytest
import torch
from fastai.callback.core import Callback

from audiosweep.evaluation import save_model
from audiosweep.training import fit
from tests.conftest import toy_learner
from tests.test_recipes import Scripted, learner, same, snapshot, toy_arch  # noqa: F401  (toy_arch: a fixture)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class Weights(Callback):
    """The whole model's weights after every epoch."""

    def __init__(self):
        self.epochs = []

    def after_epoch(self):
        self.epochs.append(snapshot(self.learn.model_body.whole))


def saved_weights(learn, cfg, path) -> dict:
    saved = torch.load(save_model(path, learn, cfg, ["a", "b", "c"], {}), weights_only=True)
    path.unlink()
    return saved


@pytest.mark.parametrize("checkpoint, save", [("best", "best"), ("best", "final"), ("last", "best"),
                                              ("last", "final")])
def test_the_best_epoch_is_evaluated_and_saved_as_asked(checkpoint, save, tmp_path, capsys):
    weights = Weights()
    learn, cfg = toy_learner({"arch": "simple_cnn", "checkpoint": checkpoint, "save_model": save}, 32, 48,
                             [weights])
    learn.metrics = Scripted([0.3, 0.8, 0.5])
    fit(learn, cfg)
    best, last = weights.epochs[1], weights.epochs[2]
    assert len(weights.epochs) == 3 and not same(best, last)
    assert (learn.best_epoch.best_at, learn.best_epoch.best) == (2, 0.8)
    evaluated = 2 if checkpoint == "best" else 3
    assert learn.best_epoch.evaluated == evaluated and same(snapshot(learn.model), weights.epochs[evaluated - 1])
    assert ("checkpoint best: the weights of epoch 2 are evaluated (validation accuracy 0.8000)"
            in capsys.readouterr().out) == (checkpoint == "best")
    saved = saved_weights(learn, cfg, tmp_path / "model.pt")
    assert same(saved["state_dict"], best if "best" in (checkpoint, save) else last)
    assert saved["weights"] == ("best" if checkpoint == "best" else save)
    assert (learn.best_epoch.state is None) == (checkpoint == "last" and save == "final")  # no copy unless asked


@pytest.mark.usefixtures("toy_arch")
@pytest.mark.parametrize("finetune", ["full", "head"])
def test_the_best_epoch_counts_across_phases_and_keeps_the_whole_model(finetune, monkeypatch, tmp_path):
    """full: one frozen epoch, then two with all layers; head: the head alone, the whole model kept."""
    monkeypatch.chdir(tmp_path)
    learn, cfg, _ = learner(arch="toy_pretrained", checkpoint="best", finetune=finetune, save_model="best",
                            n_epochs=2 if finetune == "full" else 3)
    weights = Weights()
    learn.add_cb(weights)
    learn.metrics = Scripted([0.3, 0.8, 0.5])
    fit(learn, cfg)
    assert len(weights.epochs) == 3 and not same(weights.epochs[1], weights.epochs[2])
    assert learn.best_epoch.best_at == 2 and same(snapshot(learn.model), weights.epochs[1])
    saved = saved_weights(learn, cfg, tmp_path / "model.pt")
    assert same(saved["state_dict"], weights.epochs[1]) and saved["weights"] == "best"  # what was evaluated
    assert not list(tmp_path.iterdir())  # nothing written to the working folder
