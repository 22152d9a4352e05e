"""Training recipes: optimizers, schedules, the KL loss, progressive unfreezing and the best-epoch checkpoint, on tiny
Learners and through train.py with a toy architecture whose registry entry exposes its blocks."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastai.callback.core import Callback
from fastai.layers import NoneReduce
from fastai.learner import Metric
from fastai.losses import CrossEntropyLossFlat
from fastai.optimizer import Adam, Optimizer, OptimWrapper, adam_step, momentum_step
from fastai.torch_core import params
from torch import nn

from audiosweep import models
from audiosweep.config import merge
from audiosweep.errors import ConfigError
from audiosweep.models import Arch, ArchEntry
from audiosweep.recipes import KLDivLossFlat, StepLR, fit_schedule
from audiosweep.training import History, fit
from tests.conftest import toy_learner
from tests.test_train import run as run_train

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

WIDTH, N_BLOCKS = 8, 3
BLOCK_PARAMS = WIDTH * WIDTH + WIDTH


def toy(n_in: int, n_out: int, pretrained: bool = False) -> Arch:
    """(body: pooling, a linear stem, N_BLOCKS linear blocks; head: a linear layer); never pretrained."""
    return toy_pretrained(n_in, n_out, pretrained=False)


def toy_pretrained(n_in: int, n_out: int, pretrained: bool = True) -> Arch:
    """The toy with ``pretrained``: a 'pretrained' body and a two-group splitter, as pretrained architectures have."""
    blocks = [nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.ReLU()) for _ in range(N_BLOCKS)]
    body = nn.Sequential(nn.AdaptiveAvgPool2d((2, 4)), nn.Flatten(), nn.Linear(n_in * 8, WIDTH), *blocks)
    model = nn.Sequential(body, nn.Sequential(nn.Linear(WIDTH, n_out)))
    splitter = (lambda m: [params(m[0]), params(m[1])]) if pretrained else None
    return Arch(model, splitter, pretrained, blocks)


def outside_blocks(n_in: int, n_out: int) -> int:
    return n_in * 8 * WIDTH + WIDTH + WIDTH * n_out + n_out


@pytest.fixture
def toy_arch(monkeypatch):
    monkeypatch.setitem(models.ARCHS, "toy", ArchEntry(toy, pretrainable=False, blocks=True))
    monkeypatch.setitem(models.ARCHS, "toy_pretrained", ArchEntry(toy_pretrained, pretrainable=True, blocks=True))


def learner(**layer):
    history = History()
    return (*toy_learner({"arch": "toy", "learning_rate": 1e-2, **layer}, 8, 16, [history]), history)


class Scripted(Metric):
    """A validation 'accuracy' that takes the given values epoch after epoch."""

    def __init__(self, values):
        self.values, self.epoch = values, 0

    def reset(self):
        self.epoch += 1

    def accumulate(self, learn):
        pass

    @property
    def value(self):
        return self.values[self.epoch - 1]

    @property
    def name(self):
        return "accuracy"


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_default_recipe_is_fastais(toy_arch, monkeypatch):
    learn, cfg, _ = learner()
    learn.create_opt()
    assert type(learn.loss_func) is CrossEntropyLossFlat and learn.loss_func.func.label_smoothing == 0
    assert learn.opt_func is Adam and adam_step in learn.opt.cbs and learn.wd == 0.01
    calls = []
    monkeypatch.setattr(learn, "fit_one_cycle", lambda *a, **k: calls.append((a, k)))
    fit(learn, cfg)
    assert calls == [((3, 1e-2), {})]
    learn, cfg, _ = learner(arch="toy_pretrained")
    monkeypatch.setattr(learn, "fine_tune", lambda *a, **k: calls.append((a, k)))
    fit(learn, cfg)
    assert calls[-1] == ((3,), {"base_lr": 1e-2, "freeze_epochs": 1})


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_optimizers_freeze_and_take_discriminative_rates(toy_arch, optimizer):
    learn, cfg, _ = learner(arch="toy_pretrained", optimizer=optimizer, weight_decay=0.1, schedule="constant")
    body = snapshot(learn.model[0])
    fit_schedule(learn, cfg, 1, slice(cfg.learning_rate))  # built frozen: the head alone trains
    assert same(body, snapshot(learn.model[0]))
    learn.unfreeze()
    fit_schedule(learn, cfg, 1, slice(1e-4, 1e-2))
    assert not same(body, snapshot(learn.model[0]))
    assert [h["lr"] for h in learn.opt.hypers] == pytest.approx([1e-4, 1e-2])
    assert [h["wd"] for h in learn.opt.hypers] == [0.1, 0.1]
    if optimizer == "adamw":
        assert isinstance(learn.opt, OptimWrapper) and isinstance(learn.opt.opt, torch.optim.AdamW)
        assert [g["weight_decay"] for g in learn.opt.opt.param_groups] == [0.1, 0.1]
    else:
        assert isinstance(learn.opt, Optimizer)
        steps = {"adam": adam_step, "sgd": momentum_step}
        assert steps[optimizer] in learn.opt.cbs
        assert optimizer != "sgd" or learn.opt.hypers[0]["mom"] == 0.9


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_plateau_multiplies_the_rate_after_patience_epochs_without_progress(toy_arch, optimizer):
    learn, cfg, _ = learner(optimizer=optimizer, schedule="plateau", plateau_patience=2, plateau_factor=0.5)
    learn.metrics = Scripted([0.5, 0.5, 0.5, 0.6, 0.6, 0.6, 0.6])
    fit_schedule(learn, cfg, 7, cfg.learning_rate)
    per_epoch = learn.recorder.lrs[::len(learn.dls.train)]
    # best at epochs 1 and 4; two epochs without better: the rate halves after epochs 3 and 6
    assert per_epoch == pytest.approx([1e-2, 1e-2, 1e-2, 5e-3, 5e-3, 5e-3, 2.5e-3])


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_cosine_anneals_to_zero_and_constant_stays(toy_arch, schedule):
    learn, cfg, _ = learner(schedule=schedule, optimizer="adamw")
    fit_schedule(learn, cfg, 3, cfg.learning_rate)
    lrs = np.array(learn.recorder.lrs)
    assert len(lrs) == 3 * len(learn.dls.train) and lrs[0] == pytest.approx(1e-2)
    if schedule == "cosine":  # from 1e-2 at the first batch towards 0 after the last
        assert lrs == pytest.approx(1e-2 * (1 + np.cos(np.pi * np.arange(len(lrs)) / len(lrs))) / 2)
        assert lrs[-1] < 1e-2 * 0.02
    else:
        assert np.all(lrs == 1e-2)


class EpochRates(Callback):
    """Each epoch's learning rates: every parameter group's, at the start of its training."""

    order = 99

    def __init__(self):
        self.rates = []

    def before_train(self):
        self.rates.append([h["lr"] for h in self.opt.hypers])


def torch_rates(lr: float, n_epochs: int, **scheduler) -> list[float]:
    """PyTorch's StepLR (``step_size``) or MultiStepLR (``milestones``), stepped after each epoch as the Palanisamy et
    al. code does: the rate of each epoch."""
    opt = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=lr)
    cls = torch.optim.lr_scheduler.MultiStepLR if "milestones" in scheduler else torch.optim.lr_scheduler.StepLR
    sched, rates = cls(opt, gamma=0.1, **scheduler), []
    for _ in range(n_epochs):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return rates


@pytest.mark.parametrize("keys, n_epochs, expected", [
    ({"step_size": 30}, 70, [1e-4] * 30 + [1e-5] * 30 + [1e-6] * 10),  # pretrained: 70 epochs, /10 every 30
    ({"step_milestones": [300, 350]}, 450, [1e-4] * 300 + [1e-5] * 50 + [1e-6] * 100)])  # random init
def test_step_schedule_sets_each_epochs_rate_as_torchs_step_schedulers(keys, n_epochs, expected):
    """The callback's events driven by hand over a fastai optimizer (hundreds of real epochs take minutes on a
    CPU); the next test runs it in real fits."""
    cfg = merge([{"schedule": "step", **keys}])
    cb = StepLR(cfg.step_factor, cfg.step_size, cfg.step_milestones)
    cb.learn = SimpleNamespace(opt=Adam([nn.Parameter(torch.zeros(1))], lr=1e-4), n_epoch=n_epochs, epoch=0)
    cb.before_fit()
    per_epoch = []
    for epoch in range(n_epochs):
        cb.learn.epoch = epoch
        cb.before_epoch()
        per_epoch.append(cb.learn.opt.hypers[0]["lr"])
    torch_keys = {"milestones" if k == "step_milestones" else k: v for k, v in keys.items()}
    assert per_epoch == pytest.approx(expected, rel=1e-12)
    assert per_epoch == pytest.approx(torch_rates(1e-4, n_epochs, **torch_keys), rel=1e-12)


def test_step_schedule_runs_batches_at_the_epochs_rate_and_scales_each_groups_rate(toy_arch):
    learn, cfg, _ = learner(schedule="step", step_size=2, step_factor=0.5)
    fit_schedule(learn, cfg, 5, 1e-2)
    assert learn.recorder.lrs == pytest.approx([r for r in (1e-2, 1e-2, 5e-3, 5e-3, 2.5e-3)
                                                for _ in range(len(learn.dls.train))])
    rates = EpochRates()
    layer = {"arch": "toy_pretrained", "schedule": "step", "step_milestones": [1], "step_factor": 0.5}
    learn, cfg = toy_learner(layer, 8, 16, [rates])
    learn.unfreeze()
    fit_schedule(learn, cfg, 2, slice(1e-4, 1e-2))
    assert np.allclose(rates.rates, [[1e-4, 1e-2], [5e-5, 5e-3]], rtol=1e-12, atol=0)


@pytest.mark.parametrize("layer, message", [
    ({}, "step_size and step_milestones: schedule step needs exactly one of them"),
    ({"step_size": 30, "step_milestones": [300]}, "step_size and step_milestones: schedule step needs exactly one"),
    ({"step_milestones": [350, 300]}, r"step_milestones: give increasing epochs, e.g. \[300, 350\], got \[350, 300\]"),
    ({"step_milestones": [300, 300]}, "step_milestones: give increasing epochs"),
    ({"step_milestones": []}, "step_milestones: give increasing epochs"),
    ({"step_size": 0}, "step_size: must be >= 1, got 0"),
    ({"step_size": 30, "step_factor": 1.5}, r"step_factor: must be in \(0, 1\), got 1.5")])
def test_step_schedule_keys_are_checked(layer, message):
    with pytest.raises(ConfigError, match=message):
        merge([{"schedule": "step", **layer}])


def test_step_keys_have_no_effect_under_other_schedules_and_milestones_past_the_fit_are_named(toy_arch):
    idle = merge([{"schedule": "one_cycle", "step_size": 30, "step_factor": 0.5}]).effective_dict()
    assert (idle["step_size"], idle["step_milestones"], idle["step_factor"]) == (None, None, 0.1)
    learn, cfg, _ = learner(schedule="step", step_milestones=[1, 30], n_epochs=2)
    with pytest.warns(UserWarning, match=r"step_milestones: epoch 30 \(0-based\) never comes in a fit of 2 epochs"):
        fit(learn, cfg)


@pytest.mark.parametrize("schedule", ["step", "one_cycle", "constant"])
def test_without_discriminative_rates_every_layer_trains_from_the_first_epoch_at_one_rate(toy_arch, schedule):
    """The Palanisamy et al. recipe for a pretrained body: freeze_epochs 0, discriminative_lr false."""
    learn, cfg, history = learner(arch="toy_pretrained", schedule=schedule, step_size=30, freeze_epochs=0,
                                  discriminative_lr=False, n_epochs=2)
    rates = Watch(learn.model_body.blocks)
    learn.add_cb(rates)
    body = snapshot(learn.model[0])
    fit(learn, cfg)
    assert len(rates.start) == 2 and not same(body, snapshot(learn.model[0]))  # one fit, the body moves in it
    assert all(r["trainable_params"] == outside_blocks(1, 3) + N_BLOCKS * BLOCK_PARAMS for r in history.rows)
    lrs = [h["lr"] for h in learn.opt.hypers]
    assert lrs[0] == lrs[1] and (schedule == "one_cycle" or lrs == [1e-2, 1e-2])
    learn, cfg, _ = learner(arch="toy_pretrained", schedule="step", step_size=30, freeze_epochs=0, n_epochs=1)
    fit(learn, cfg)  # the default: fine_tune's discriminative rates
    assert [h["lr"] for h in learn.opt.hypers] == pytest.approx([1e-2 / 200, 1e-2 / 2])
    assert merge([{"pretrained": False, "discriminative_lr": False}]).effective_dict()["discriminative_lr"]
    assert merge([{"unfreeze_schedule": [[0, 1]], "discriminative_lr": False}]).effective_dict()["discriminative_lr"]


def test_adam_l2_steps_as_torchs_adam_with_coupled_weight_decay_on_every_parameter(toy_arch):
    """The Palanisamy et al. optimizer, torch.optim.Adam(lr, weight_decay=1e-3): biases decay too. fastai's adam
    (decoupled, biases spared) steps differently."""
    def steps(optimizer):
        learn, cfg, _ = learner(optimizer=optimizer, weight_decay=1e-3, learning_rate=1e-2)
        learn.create_opt()
        learn.opt.set_hyper("lr", cfg.learning_rate)  # what fit sets
        learn.opt.set_hyper("wd", cfg.weight_decay)
        ps = [p for group in learn.opt.param_lists for p in group]
        ref = [nn.Parameter(p.detach().clone()) for p in ps]
        torch_adam = torch.optim.Adam(ref, lr=1e-2, weight_decay=1e-3)
        torch.manual_seed(1)
        for _ in range(3):
            for p, r in zip(ps, ref):
                p.grad = torch.randn_like(p)
                r.grad = p.grad.clone()
            learn.opt.step()
            torch_adam.step()
        return ps, ref

    ps, ref = steps("adam_l2")
    assert any(p.ndim == 1 for p in ps)  # biases among them
    assert all(torch.allclose(p, r, rtol=0, atol=1e-7) for p, r in zip(ps, ref))
    ps, ref = steps("adam")
    assert not all(torch.allclose(p, r, rtol=0, atol=1e-7) for p, r in zip(ps, ref))


def test_kl_divergence_of_the_smoothed_target():
    torch.manual_seed(0)
    pred, targ, eps, k = torch.randn(4, 5), torch.tensor([0, 3, 1, 3]), 0.1, 5
    q = torch.full((4, k), eps / k)
    q[torch.arange(4), targ] += 1 - eps
    by_hand = (q * (q.log() - pred.log_softmax(-1))).sum(1)
    loss = KLDivLossFlat(label_smoothing=eps)
    assert loss(pred, targ) == pytest.approx(by_hand.mean().item(), abs=1e-6)
    with NoneReduce(loss) as per_sample:  # how fastai's MixUp calls it
        assert torch.allclose(per_sample(pred, targ), by_hand, atol=1e-6)
    assert loss.reduction == "mean"
    # cross-entropy with the same smoothing = KL + the target's (constant) entropy
    entropy = -(q * q.log()).sum(1).mean()
    ce = F.cross_entropy(pred, targ, label_smoothing=eps)
    assert ce.item() == pytest.approx((loss(pred, targ) + entropy).item(), abs=1e-6)
    assert torch.equal(loss.decodes(pred), pred.argmax(1))
    assert torch.allclose(loss.activation(pred), pred.softmax(1))


class Watch(Callback):
    """The blocks' weights at the start and end of every training phase, and whether their gradients are None."""

    order = 99

    def __init__(self, blocks):
        self.blocks, self.start, self.end, self.grad_none = blocks, [], [], []

    def before_train(self):
        self.start.append([snapshot(b) for b in self.blocks])

    def after_train(self):
        self.end.append([snapshot(b) for b in self.blocks])
        self.grad_none.append([all(p.grad is None for p in b.parameters()) for b in self.blocks])


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_frozen_blocks_do_not_move_even_with_weight_decay_and_momentum(toy_arch, optimizer):
    # 3 blocks, then back to 1: the re-frozen blocks keep Adam moments, which must not move them either
    learn, cfg, history = learner(optimizer=optimizer, weight_decay=0.5, unfreeze_schedule=[[0, 3], [1, 1]],
                                  n_epochs=2)
    watch = Watch(learn.model_body.blocks)
    learn.add_cb(watch)
    fit(learn, cfg)
    moved = [[not same(a, b) for a, b in zip(s, e)] for s, e in zip(watch.start, watch.end)]
    assert moved == [[True, True, True], [False, False, True]]
    assert watch.grad_none[1][:2] == [True, True]  # skipped by the optimizer
    outside = outside_blocks(1, 3)
    assert [r["trainable_params"] for r in history.rows] == [outside + 3 * BLOCK_PARAMS, outside + BLOCK_PARAMS]
    assert all(p.requires_grad for p in learn.model.parameters())  # all trainable again after the fit


def test_scheduled_epochs_past_the_end_of_the_fit_are_named(toy_arch):
    learn, cfg, _ = learner(unfreeze_schedule=[[0, 1], [1, 2], [30, 3]], n_epochs=2)
    with pytest.warns(UserWarning, match=r"unfreeze_schedule: epoch 30 \(0-based\) never comes in a fit of 2 epochs"):
        fit(learn, cfg)


def run(tmp_path, synth_root, cache_dir, *extra, name="res"):
    code, rec, out = run_train(tmp_path, synth_root, cache_dir, *extra, name=name)
    assert code == 0
    return rec, out


def test_checkpoint_best_records_and_saves_the_best_epoch(toy_arch, tmp_path, synth_root, cache_dir):
    rec, out = run(tmp_path, synth_root, cache_dir, "--arch", "toy", "--n_epochs", "4", "--learning_rate", "0.05",
                   "--checkpoint", "best", "--save_model", "best")
    accs = [r["accuracy"] for r in rec["history"]]
    s = rec["summary"]
    assert s["accuracy"] == pytest.approx(max(accs)) and s["evaluated_epoch"] == accs.index(max(accs)) + 1
    assert s["valid_loss"] == rec["history"][s["evaluated_epoch"] - 1]["valid_loss"]
    n_params = outside_blocks(1, 10) + N_BLOCKS * BLOCK_PARAMS
    assert all(r["trainable_params"] == n_params for r in rec["history"])  # nothing frozen
    preds = np.load(out / f"{rec['run_id']}.preds.npz")  # the evaluated model's
    assert (preds["probs"].argmax(1) == preds["targets"]).mean() == pytest.approx(s["accuracy"])
    assert (out / f"{rec['run_id']}.model.pt").is_file()


def test_paper_recipe_with_unfreezing_is_reproducible(toy_arch, tmp_path, synth_root, cache_dir):
    args = ("--arch", "toy", "--n_epochs", "4", "--optimizer", "adamw", "--schedule", "plateau",
            "--plateau_patience", "1", "--loss", "kl_div", "--label_smoothing", "0.05", "--mix_up", "0.4",
            "--unfreeze_schedule", "[[0, 1], [2, 2], [3, 5]]", "--checkpoint", "best")
    with pytest.warns(UserWarning, match="unfreeze_schedule: 5 blocks asked for, the model has 3"):
        a, _ = run(tmp_path, synth_root, cache_dir, *args, name="a")
    b, _ = run(tmp_path, synth_root, cache_dir, *args, name="b")
    outside = outside_blocks(1, 10)
    assert [r["trainable_params"] for r in a["history"]] == [outside + BLOCK_PARAMS * n for n in (1, 1, 2, 3)]
    assert a["config"]["freeze_epochs"] == 0 and a["summary"]["evaluated_epoch"] >= 1
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in a["history"]]
    assert strip == [{k: v for k, v in r.items() if k != "time_s"} for r in b["history"]]
    assert a["summary"]["accuracy"] == b["summary"]["accuracy"]
