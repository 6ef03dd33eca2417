import numpy as np
import torch

from kdfair_cli.data.batches import ImageBatches, epoch_order, random_crop_flip


def test_normalise_matches_formula() -> None:
    imgs = torch.randint(0, 256, (3, 3, 4, 4), dtype=torch.uint8)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    got = ImageBatches(imgs, mean, std).get(torch.arange(3))
    want = (imgs.double() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(got.double(), want, atol=1e-5)


def test_crop_flip_equals_per_sample_reference() -> None:
    x = torch.randn(5, 3, 8, 8)
    gen = torch.Generator().manual_seed(1)
    got = random_crop_flip(x, gen, pad=2)
    # Replay the same random draws and build each sample by hand.
    gen = torch.Generator().manual_seed(1)
    oy = torch.randint(0, 5, (5,), generator=gen)
    ox = torch.randint(0, 5, (5,), generator=gen)
    flip = torch.rand(5, generator=gen) < 0.5
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(5):
        crop = padded[i, :, oy[i]:oy[i] + 8, ox[i]:ox[i] + 8]
        if flip[i]:
            crop = crop.flip(-1)
        assert torch.equal(got[i], crop)


def test_epoch_order_is_a_permutation_and_pure() -> None:
    a = epoch_order(100, 3, 7, torch.device("cpu"))
    assert sorted(a.tolist()) == list(range(100))
    assert torch.equal(a, epoch_order(100, 3, 7, torch.device("cpu")))
    assert not torch.equal(a, epoch_order(100, 3, 8, torch.device("cpu")))
    assert not np.array_equal(a.numpy(), epoch_order(100, 4, 7, torch.device("cpu")).numpy())
