"""Batches decoded from image files by a DataLoader: for image sets that do not fit in memory.

Implements the Batches protocol (kdfair_cli.data.batches): `epoch(order, ...)` yields the
samples in exactly the given order (so the loop's labels and cached teacher logits line up, and
DDP ranks can each take their shard of the order), decoded and transformed in worker processes,
collated as uint8, copied to the device through pinned memory without blocking, and normalised
there in one multiply-add. Augmentation draws one seed per sample from the epoch's generator,
so the crops are the same whatever the number of workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from kdfair_cli.errors import KdfairError


class _Decoder(torch.utils.data.Dataset):
    """Item (position, seed) -> uint8 [3, S, S]; seed < 0 means the evaluation transform."""

    def __init__(self, paths: Sequence[str], image_size: int, resize: int, crop_scale: float) -> None:
        from torchvision.transforms import v2

        self.paths = list(paths)
        self.train_tf = v2.Compose([v2.ToImage(), v2.RandomResizedCrop(image_size, scale=(crop_scale, 1.0),
                                                                       antialias=True),
                                    v2.RandomHorizontalFlip()])
        self.eval_tf = v2.Compose([v2.ToImage(), v2.Resize(resize, antialias=True), v2.CenterCrop(image_size)])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: tuple[int, int]) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError

        pos, seed = item
        path = self.paths[pos]
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
        except FileNotFoundError:
            raise KdfairError(f"image {path} is missing (the folder changed after it was scanned)") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise KdfairError(f"image {path} cannot be decoded: {exc}") from exc
        if seed < 0:
            return self.eval_tf(img).as_subclass(torch.Tensor)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.train_tf(img).as_subclass(torch.Tensor)


class _BatchList(torch.utils.data.Sampler):
    """A batch sampler whose batches are replaced before each pass (the loader stays alive)."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int]]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class StreamingBatches:
    def __init__(self, paths: Sequence[str], device: Any, mean: tuple[float, ...], std: tuple[float, ...],
                 image_size: int, resize: int, crop_scale: float = 0.08, workers: int = 0) -> None:
        self.device = torch.device(device)
        self.decoder = _Decoder(paths, image_size, resize, crop_scale)
        self.workers = workers
        self.sampler = _BatchList()
        self._loader: torch.utils.data.DataLoader | None = None
        std_t = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = -mean_t / std_t

    def __len__(self) -> int:
        return len(self.decoder)

    def _loader_for(self) -> torch.utils.data.DataLoader:
        if self._loader is None:
            pin = self.device.type == "cuda"
            self._loader = torch.utils.data.DataLoader(
                self.decoder, batch_sampler=self.sampler, num_workers=self.workers, pin_memory=pin,
                persistent_workers=self.workers > 0, prefetch_factor=4 if self.workers > 0 else None)
        return self._loader

    def _run(self, order: torch.Tensor, batch_size: int,
             seeds: torch.Tensor | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        positions = order.tolist()
        seed_list = seeds.tolist() if seeds is not None else [-1] * len(positions)
        self.sampler.batches = [list(zip(positions[s:s + batch_size], seed_list[s:s + batch_size]))
                                for s in range(0, len(positions), batch_size)]
        index_dev = order.to(self.device)
        for k, batch in enumerate(self._loader_for()):
            x = batch.to(self.device, non_blocking=True)
            yield index_dev[k * batch_size:(k + 1) * batch_size], torch.addcmul(self.shift, x.float(), self.scale)

    def epoch(self, order: torch.Tensor, batch_size: int, augment: bool,
              generator: torch.Generator | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        seeds = None
        if augment:
            dev = generator.device if generator is not None else torch.device("cpu")
            seeds = torch.randint(0, 2**31 - 1, (len(order),), generator=generator, device=dev).cpu()
        return self._run(order.cpu(), batch_size, seeds)

    def sequential(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self._run(torch.arange(len(self)), batch_size, None)
