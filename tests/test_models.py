"""Model zoo: shapes, gradients, determinism, parameter counts, option and shape errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unlearnkit.errors import ConfigError, IncompatibleModelError
from unlearnkit.models import build_model, get_model_spec, list_models, register_model

# Tiny settings so every architecture runs in well under a second.
TINY = {"mlp": {"hidden": (16,)}, "cnn": {"widths": (4, 8, 8)}, "resnet18": {"width": 8},
        "vit": {"dim": 16, "depth": 2, "heads": 2}}
SHAPES = [(1, 8, 8), (3, 32, 32)]


def test_registry_lists_the_six_models() -> None:
    assert list_models() == ["cnn", "hf", "mlp", "resnet18", "transformer", "vit"]
    # the transformer and hf:DIR take token ids, not images: tests/test_text.py and tests/test_hf.py cover them
    assert set(TINY) | {"transformer", "hf"} == set(list_models())


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", sorted(TINY))
def test_forward_backward(name: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = build_model(name, shape, 5, **TINY[name])
    x = torch.randn(3, *shape)
    out = model(x)
    assert out.shape == (3, 5)
    assert torch.isfinite(out).all()
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 1, 4])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient reached {pname}"
        assert torch.isfinite(p.grad).all()
    # The batch dimension is free: a single example works too (eval mode, so BatchNorm accepts it).
    assert model.eval()(x[:1]).shape == (1, 5)


@pytest.mark.parametrize("name", sorted(TINY))
def test_deterministic_init_under_seed(name: str) -> None:
    def weights(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        return build_model(name, (3, 32, 32), 10, **TINY[name]).state_dict()

    a, b, c = weights(1), weights(1), weights(2)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point() and a[k].numel() > 1)


def test_resnet18_width64_has_the_standard_parameter_count() -> None:
    # The CIFAR ResNet-18 (3 input channels, 10 classes) has 11,173,962 parameters.
    model = build_model("resnet18", (3, 32, 32), 10)
    assert sum(p.numel() for p in model.parameters()) == 11_173_962


def test_parameter_counts_are_sane() -> None:
    counts = {n: sum(p.numel() for p in build_model(n, (3, 32, 32), 10).parameters()) for n in sorted(TINY)}
    assert 10_000 < counts["cnn"] < 200_000  # the fast default
    assert 100_000 < counts["vit"] < 1_000_000
    assert counts["mlp"] == 3072 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
    assert build_model("resnet18", (3, 32, 32), 10, width=8).fc.in_features == 64


def test_mlp_takes_feature_vectors_and_conv_models_refuse_them() -> None:
    model = build_model("mlp", (20,), 3, hidden=(8, 8))
    assert model(torch.randn(4, 20)).shape == (4, 3)
    assert len([m for m in model.modules() if isinstance(m, nn.Linear)]) == 3
    for name in ("cnn", "resnet18", "vit"):
        with pytest.raises(IncompatibleModelError, match="mlp"):
            build_model(name, (20,), 3)


def test_cnn_adapts_to_input_size() -> None:
    for shape in [(1, 8, 8), (3, 32, 32), (3, 16, 8), (1, 3, 3)]:
        torch.manual_seed(0)
        assert build_model("cnn", shape, 4, **TINY["cnn"]).eval()(torch.randn(2, *shape)).shape == (2, 4)
    big, small = build_model("cnn", (3, 32, 32), 4), build_model("cnn", (1, 8, 8), 4)
    assert any(isinstance(m, nn.BatchNorm2d) for m in big.modules())
    # Strided stem only for inputs of 16 pixels or more; 8×8 digits keep their resolution.
    assert big.features[0][0].stride == (2, 2) and small.features[0][0].stride == (1, 1)
    assert big.features[:2](torch.zeros(1, 3, 32, 32)).shape[-2:] == (8, 8)
    assert small.features[:2](torch.zeros(1, 1, 8, 8)).shape[-2:] == (4, 4)


def test_resnet18_stem_is_cifar_style() -> None:
    m = build_model("resnet18", (3, 32, 32), 10, width=8)
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1)
    assert not any(isinstance(mod, nn.MaxPool2d) for mod in m.modules())
    assert [len(layer) for layer in (m.layer1, m.layer2, m.layer3, m.layer4)] == [2, 2, 2, 2]


def test_vit_uses_linear_attention_projections_and_divisible_patches() -> None:
    m = build_model("vit", (3, 32, 32), 10, **TINY["vit"])
    assert not any(isinstance(mod, nn.MultiheadAttention) for mod in m.modules())
    blk = m.blocks[0]
    assert isinstance(blk.attn.qkv, nn.Linear) and blk.attn.qkv.out_features == 3 * 16
    assert isinstance(blk.attn.out_proj, nn.Linear) and isinstance(blk.fc1, nn.Linear)
    assert m.patch_size == 4 and m.pos_embed.shape[1] == 64 + 1
    assert build_model("vit", (1, 8, 8), 10, **TINY["vit"]).patch_size == 2
    with pytest.raises(IncompatibleModelError, match="patch_size"):
        build_model("vit", (3, 32, 32), 10, patch_size=5)
    with pytest.raises(ConfigError, match="heads"):
        build_model("vit", (3, 32, 32), 10, dim=10, heads=4)


def test_vit_attention_matches_reference_softmax_attention() -> None:
    torch.manual_seed(0)
    m = build_model("vit", (3, 8, 8), 3, dim=8, depth=1, heads=2).eval()
    attn = m.blocks[0].attn
    x = torch.randn(2, 5, 8)
    q, k, v = attn.qkv(x).chunk(3, dim=-1)
    heads = [torch.softmax(q[..., h * 4:(h + 1) * 4] @ k[..., h * 4:(h + 1) * 4].transpose(1, 2) / 2, -1)
             @ v[..., h * 4:(h + 1) * 4] for h in range(2)]
    ref = attn.out_proj(torch.cat(heads, -1))
    torch.testing.assert_close(attn(x), ref)


def test_build_model_errors() -> None:
    with pytest.raises(ConfigError, match="valid models: cnn, hf, mlp, resnet18, transformer, vit"):
        build_model("alexnet", (3, 32, 32), 10)
    with pytest.raises(ConfigError, match="valid options: width=64"):
        build_model("resnet18", (3, 32, 32), 10, depth=3)
    with pytest.raises(ConfigError, match="num_classes"):
        build_model("cnn", (3, 32, 32), 1)
    with pytest.raises(ConfigError, match="input_shape"):
        build_model("mlp", (0,), 3)
    with pytest.raises(ConfigError, match="width"):
        build_model("resnet18", (3, 32, 32), 10, width=0)
    with pytest.raises(ConfigError, match="already registered"):
        register_model("cnn", get_model_spec("cnn").builder, summary="dup", image_only=True)
    with pytest.raises(ConfigError, match="lower case"):
        register_model("CNN2", get_model_spec("cnn").builder, summary="x", image_only=True)
