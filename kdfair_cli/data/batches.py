"""Batch pipeline for in-memory image sets: index, augment and normalise on the device.

The whole split lives on the device as uint8; each batch is gathered, augmented batch-wise
(random crop with zero padding, horizontal flip) with a seeded generator, and normalised.
No per-sample PIL work, no DataLoader workers: on small images this is what keeps the loop as
fast as a bare PyTorch loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F


class Batches(Protocol):
    """What the training loop and predict need from a split: model inputs by sample position.

    `index` tensors hold positions in the split (0..N-1, on the device); labels and cached
    teacher logits are looked up with the same positions. ImageBatches is the in-memory
    implementation; a dataset may provide its own (streaming images, token ids) through a
    `make_batches(split, device, mean, std)` method.
    """

    def __len__(self) -> int: ...

    def epoch(self, order: torch.Tensor, batch_size: int, augment: bool,
              generator: torch.Generator | None) -> Iterator[tuple[torch.Tensor, Any]]:
        """(index, model input) batches following `order`."""
        ...

    def sequential(self, batch_size: int) -> Iterator[tuple[torch.Tensor, Any]]:
        """(index, model input) in order, without augmentation."""
        ...


def make_batches(dataset: Any, split: Any, device: torch.device, mean: tuple[float, ...],
                 std: tuple[float, ...], model: Any = None) -> Batches:
    """The model's own batches if it defines make_batches (text models tokenise with their own
    tokenizer), else the dataset's if it does, else in-memory uint8 images."""
    own = getattr(model, "make_batches", None)
    if own is not None:
        return own(split, device)
    custom = getattr(dataset, "make_batches", None)
    if custom is not None:
        return custom(split, device, mean, std)
    images = torch.from_numpy(np.ascontiguousarray(split.images)).to(device)
    return ImageBatches(images, mean, std)


class IndexedBatches:
    """`epoch` and `sequential` for batches gathered by position: a subclass gives `__len__`,
    `device` and `get(index)` (token ids of text classifiers and causal LMs)."""

    device: torch.device

    def __len__(self) -> int:
        raise NotImplementedError

    def get(self, index: torch.Tensor) -> Any:
        raise NotImplementedError

    def epoch(self, order: torch.Tensor, batch_size: int, augment: bool,
              generator: torch.Generator | None) -> Iterator[tuple[torch.Tensor, Any]]:
        """(index, batch) following `order`; no augmentation for token batches."""
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            yield index, self.get(index)

    def sequential(self, batch_size: int) -> Iterator[tuple[torch.Tensor, Any]]:
        n = len(self)
        for start in range(0, n, batch_size):
            index = torch.arange(start, min(start + batch_size, n), device=self.device)
            yield index, self.get(index)


class ImageBatches:
    """Normalised float batches from a uint8 NCHW tensor already on the device."""

    def __init__(self, images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.images = images
        device = images.device
        # Fold /255 and the normalisation into one multiply-add.
        std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = -mean_t / std_t

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def normalise(self, batch_u8: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, batch_u8.float(), self.scale)

    def get(self, index: torch.Tensor, augment: bool = False,
            generator: torch.Generator | None = None) -> torch.Tensor:
        """Gather `index`, optionally crop/flip, and normalise."""
        batch = self.normalise(self.images[index])
        if augment:
            batch = random_crop_flip(batch, generator)
        return batch

    def epoch(self, order: torch.Tensor, batch_size: int, augment: bool,
              generator: torch.Generator | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            yield index, self.get(index, augment, generator)

    def sequential(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(index, batch) in order, without augmentation: for prediction."""
        n = len(self)
        for start in range(0, n, batch_size):
            index = torch.arange(start, min(start + batch_size, n), device=self.images.device)
            yield index, self.get(index)


def epoch_order(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """The shuffled sample order of one epoch, a pure function of (seed, epoch).

    Deriving it from the epoch number (not from a running RNG) is what makes a resumed run
    replay exactly the batches of an uninterrupted one.
    """
    gen = torch.Generator().manual_seed(_mix(seed, epoch, 1))
    return torch.randperm(n, generator=gen).to(device)


def augment_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """The augmentation RNG of one epoch, a pure function of (seed, epoch)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(_mix(seed, epoch, 2))
    return gen


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of torch's global RNG (dropout) for one epoch: `seed` itself in epoch 0, so a run
    whose model draws nothing from it is unchanged; a pure function of (seed, epoch), so a run
    resumed after epoch e draws the same dropout masks as an uninterrupted one."""
    return seed if epoch == 0 else _mix(seed, epoch, 3)


def _mix(seed: int, epoch: int, stream: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + stream) % (2**63 - 1)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator | None,
                     pad: int | None = None) -> torch.Tensor:
    """Random crop of the zero-padded image (pad = size/8, 4 px at 32 px) and random h-flip.

    Zero padding is applied after normalisation, i.e. it pads with the dataset mean.
    """
    b, _, h, w = x.shape
    pad = max(1, h // 8) if pad is None else pad
    device = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    off_y = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=device)
    off_x = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=device)
    flip = torch.rand(b, generator=generator, device=device) < 0.5
    rows = off_y[:, None] + torch.arange(h, device=device)[None, :]
    cols_base = torch.arange(w, device=device)[None, :]
    cols_base = torch.where(flip[:, None], (w - 1) - cols_base, cols_base)
    cols = off_x[:, None] + cols_base
    batch_idx = torch.arange(b, device=device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch_idx, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()
