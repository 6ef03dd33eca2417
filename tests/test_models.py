import pytest
import torch

from kdfair_cli.errors import KdfairError
from kdfair_cli.models.registry import build_model, count_parameters


@pytest.mark.parametrize("arch,expected", [("resnet20", 0.27e6), ("resnet56", 0.85e6), ("resnet110", 1.7e6)])
def test_cifar_resnet_sizes_match_the_paper(arch: str, expected: float) -> None:
    # He et al. 2016 Table 6: ResNet-20 0.27M, ResNet-56 0.85M, ResNet-110 1.7M parameters.
    n = count_parameters(build_model(arch, 10, (3, 32, 32)))
    assert abs(n - expected) / expected < 0.02


def test_resnet_depth_is_6n_plus_2() -> None:
    model = build_model("resnet32", 10, (3, 32, 32))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(convs) + len(linears) == 32


def test_lenet5_classic_shape_and_any_size() -> None:
    model = build_model("lenet5", 10, (3, 32, 32))
    assert model.fc1.in_features == 16 * 5 * 5
    # 3*6*25+6 + 6*16*25+16 + 400*120+120 + 120*84+84 + 84*10+10
    assert count_parameters(model) == 456 + 2416 + 48120 + 10164 + 850
    for size in (16, 28, 64):
        out = build_model("lenet5", 7, (3, size, size))(torch.zeros(2, 3, size, size))
        assert out.shape == (2, 7)


def test_unknown_arch_and_too_small_input() -> None:
    with pytest.raises(KdfairError, match="unknown arch"):
        build_model("resnet21", 10, (3, 32, 32))
    with pytest.raises(KdfairError, match="at least 12x12"):
        build_model("lenet5", 10, (3, 8, 8))
