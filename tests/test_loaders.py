"""Device-resident batches: every row served once an epoch, in a reproducible order, as float32."""

from __future__ import annotations

import torch

from audiosweep.config import merge
from audiosweep.loaders import TensorLoader, make_dls


def rows_served(loader: TensorLoader) -> list[int]:
    return [int(v) for xb, _ in loader for v in xb[:, 0, 0, 0]]


def test_the_run_loaders_serve_their_rows_and_drop_a_last_batch_of_one():
    """17 training clips in batches of 8: the last batch of one clip is dropped (BatchNorm cannot train on it);
    validation batches are twice as large and in order."""
    cfg = merge([{"batch_size": 8, "trial_num": 3}])
    x = torch.arange(24, dtype=torch.float16).view(24, 1, 1, 1).expand(24, 1, 2, 3).contiguous()
    y = torch.arange(24) % 4
    dls = make_dls(x, y, torch.arange(17), torch.arange(17, 24), cfg)
    assert len(dls.train) == 2 and dls.valid.bs == 16
    first = rows_served(dls.train)
    assert len(set(first)) == 16 and set(first) <= set(range(17)) and first != sorted(first)  # shuffled
    assert rows_served(make_dls(x, y, torch.arange(17), torch.arange(17, 24), cfg).train) == first  # trial_num
    assert rows_served(dls.train) != first  # each epoch its own order
    xb, yb = next(iter(dls.train))
    assert xb.dtype == torch.float32 and xb.shape == (8, 1, 2, 3) and torch.equal(yb, xb[:, 0, 0, 0].long() % 4)
    assert rows_served(dls.valid) == list(range(17, 24))


def test_a_new_loader_keeps_the_rows_and_the_transform():
    x, y = torch.randn(10, 1, 2, 2), torch.zeros(10, dtype=torch.long)
    loader = TensorLoader(x, y, 4, idx=torch.arange(2, 8), transform=lambda xb: xb.float() * 0)
    copy = loader.new(shuffle=True)
    assert copy.shuffle and len(copy) == 2 and torch.equal(copy.idx, loader.idx)
    assert all(not xb.any() for xb, _ in copy)
