"""``finetune: head``: the pretrained body stays frozen (weights and BatchNorm statistics) and only the head trains,
the linear-probe protocol of AudioSet-model papers ("frozen BEATs + linear head").

When nothing random happens before the head (no augmentation, no MixUp), the frozen body computes the same output
for a clip in every epoch: it then runs once per run over all clips, and the head trains on those embeddings, so
an epoch costs a pass of the head only. Otherwise every batch goes through the frozen body, without its backward
pass. Either way the Learner ends with the whole model and the feature loaders, so evaluation, TTA and the saved
model see the usual Learner.
"""

from __future__ import annotations

import time

import torch
from fastai.learner import Learner
from fastai.torch_core import trainable_params
from torch import nn
from tqdm.std import tqdm  # not tqdm.auto: it warns in Jupyter without ipywidgets

from .config import Config
from .device import resolve_precision
from .loaders import make_dls
from .recipes import fit_schedule


def fit_head(learn: Learner, cfg: Config) -> None:
    """Train the head of ``learn.model`` (``Sequential(body, head)``) for ``cfg.n_epochs`` epochs of the run's
    schedule."""
    if not once_per_run(learn, cfg):
        why = ("augmentation changes its input" if learn.dls.train.transform is not None else
               "MixUp changes its input" if cfg.mix_up else "layers before the pretrained blocks train")
        print(f"finetune head: epochs 1-{cfg.n_epochs}, the frozen body runs on every batch ({why})")
        fit_schedule(learn, cfg, cfg.n_epochs, cfg.learning_rate)
        return
    whole, dls, splitter = learn.model, learn.dls, learn.splitter
    frozen, head = split_frozen(whole)
    t0 = time.time()
    emb = embed(frozen, dls.valid.x, dls.valid.bs, dls.device, resolve_precision(cfg, torch.device(dls.device)))
    print(f"finetune head: the frozen body's outputs {tuple(emb.shape[1:])} of {len(emb)} clips computed once in "
          f"{time.time() - t0:.1f}s; epochs 1-{cfg.n_epochs} train the head on them")
    emb_dls = make_dls(emb, dls.train.y, dls.train.idx, dls.valid.idx, cfg, device=dls.device)
    learn.model, learn.dls, learn.splitter, learn.opt = head, emb_dls, trainable_params, None
    learn.model_body.whole_model = whole  # what BestEpoch keeps: the head's weights inside the whole model
    try:
        fit_schedule(learn, cfg, cfg.n_epochs, cfg.learning_rate)
    finally:
        learn.model, learn.dls, learn.splitter, learn.opt = whole, dls, splitter, None
        learn.model_body.whole_model = None


def once_per_run(learn: Learner, cfg: Config) -> bool:
    """Whether the frozen body's output is the same in every epoch: no augmented batches, no MixUp, and nothing in
    the body that trains (cnn_gpt2's conv blocks and projection train with its GPT-2 blocks frozen)."""
    return learn.dls.train.transform is None and cfg.mix_up == 0 and not any(
        p.requires_grad for p in learn.model[0].parameters())


def split_frozen(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """``Sequential(body, head)`` -> (the body and the head's leading parameter-free layers, such as fastai's
    pooling and flattening; the rest of the head). Both share their modules with ``model``."""
    body, head = model[0], model[1]
    n = 0
    while n < len(head) - 1 and not any(True for _ in head[n].parameters()):
        n += 1
    return nn.Sequential(body, *head[:n]), nn.Sequential(*head[n:])


@torch.no_grad()
def embed(frozen: nn.Module, x: torch.Tensor, bs: int, device, precision: str) -> torch.Tensor:
    """``frozen`` (in eval mode) applied to every row of ``x`` in batches of ``bs`` on ``device``: (N, ...) float32."""
    device = torch.device(device)
    was_training = frozen.training
    frozen.eval()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    out = []
    try:
        for i in tqdm(range(0, len(x), bs), desc="frozen body", unit="batch", disable=None, leave=False):
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                out.append(frozen(x[i:i + bs].to(device, non_blocking=True).float()).float())
    finally:
        frozen.train(was_training)
    return torch.cat(out)
