"""finetune head: the pretrained body stays as it was (weights and BatchNorm statistics) while the head learns;
without augmentation the body runs once per run, not once per epoch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from audiosweep.frozen_body import split_frozen
from audiosweep.models import create_arch
from audiosweep.training import fit
from tests.conftest import toy_learner

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    import timm

    torch.manual_seed(7)
    path = tmp_path_factory.mktemp("w") / "resnet10t.pth"
    torch.save(timm.create_model("resnet10t", pretrained=False).state_dict(), path)
    return str(path)


def learner(weights, **layer):
    layer = {"arch": "timm/resnet10t", "pretrained_path": weights, "finetune": "head", "learning_rate": 3e-2,
             "save_model": "best", **layer}
    learn, cfg = toy_learner(layer, 32, 48, [])
    return learn, cfg, learn.best_epoch


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_the_split_keeps_parameter_free_pooling_with_the_body():
    model = create_arch("resnet18", 1, 5, pretrained=False).model.eval()
    frozen, head = split_frozen(model)
    assert [type(m).__name__ for m in frozen][1:] == ["AdaptiveConcatPool2d", "Flatten"]
    assert isinstance(head[0], nn.BatchNorm1d) and sum(p.numel() for p in frozen.parameters()) == sum(
        p.numel() for p in model[0].parameters())
    x = torch.randn(2, 1, 64, 64)
    assert torch.allclose(head(frozen(x)), model(x))


@pytest.mark.parametrize("mix_up, body_calls", [(0.0, 2), (0.4, None)])
def test_only_the_head_learns(weights, mix_up, body_calls):
    learn, cfg, keep = learner(weights, mix_up=mix_up)
    body, whole = learn.model[0], learn.model
    calls = []
    hook = body.register_forward_hook(lambda *_: calls.append(1))
    before_body, before_head = snapshot(body), snapshot(learn.model[1])
    fit(learn, cfg)
    hook.remove()
    assert learn.model is whole and learn.dls.valid.x.shape[1:] == (1, 32, 48)  # ready for evaluation
    after_body = snapshot(body)
    assert all(torch.equal(before_body[k], after_body[k]) for k in before_body)  # running stats included
    assert any(not torch.equal(before_head[k], v) for k, v in learn.model[1].state_dict().items())
    if body_calls is not None:  # computed once: 48 clips in validation batches of 16
        assert len(calls) == 48 // 16
    else:  # MixUp changes the body's input every batch: 5 training batches x 3 epochs, plus validation
        assert len(calls) >= 15
    assert len(learn.recorder.values) == 3 and keep.state.keys() == whole.state_dict().keys()
    assert learn.recorder.values[-1][2] > 0.5  # accuracy on the 12 validation clips of 3 classes


def test_full_finetune_trains_the_body(weights):
    learn, cfg, _ = learner(weights, finetune="full", n_epochs=1, freeze_epochs=0)
    before = snapshot(learn.model[0])
    fit(learn, cfg)
    assert any(not torch.equal(before[k], v) for k, v in learn.model[0].state_dict().items())
