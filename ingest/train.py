"""Training of catfish-mini on CatFish-synth (`circuits train catfish`) and of typo-mini on
Typographic-synth (`circuits train typo`): the same network, the same loop, different images.

Every epoch draws fresh class images from CatFish-synth (a new seed per epoch, derived from the run
seed), so the network never sees an image twice and needs no augmentation; held-out accuracy is
measured on plain CatFish-synth images of a seed no epoch uses. A typo run also measures attack
success on held-out typographic attacks (the share classified as the written class). With the same seed, thread count and library versions
the run is reproducible bit for bit on the same machine (torch is seeded, the data is a function of
the seed, batches are shuffled by a seeded generator).

The result is a float32 state dict written with `torch.save` (loadable with `weights_only=True`)
and a JSON sidecar beside it: file and state-dict sha256, class names, layers, held-out accuracy,
the configuration, the command that reproduces the file, the time taken and the machine.
"""

from __future__ import annotations

import io
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ingest import hooks
from ingest.datasets.catfish import CLASS_NAMES, make_split
from ingest.datasets.typo import make_typo_split, render_typo
from ingest.hooks import DeviceError
from ingest.train_config import (
    DATASETS,
    MODELS,
    TYPO_DEFAULTS,
    TYPO_VIT_DEFAULTS,
    TrainConfig,
    TrainingError,
    reproduce_command,
)
from ingest.zoo.catfish_mini import INPUT_SIZE, MEAN, STD, WEIGHTS_PATH, preprocess
from ingest.zoo.registry import weights_sha256
from ingest.zoo.weights import file_sha256

__all__ = [
    "TYPO_DEFAULTS",
    "TYPO_VIT_DEFAULTS",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "default_weights",
    "evaluate",
    "reproduce_command",
    "resolve_device",
    "train_catfish",
    "train_typo",
]

STATE_DICT_SHA256_METHOD = "ingest.zoo.registry.weights_sha256"  # the model identity the catalog stores


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    weights_path: Path
    sidecar_path: Path
    heldout_accuracy: float
    heldout_images: int
    epochs: int
    seconds: float
    file_sha256: str
    state_dict_sha256: str
    history: tuple[dict, ...] = field(default_factory=tuple)  # per epoch: loss, train/held-out acc
    attack_success: float | None = None  # typo runs: held-out attack images read as the written class


def resolve_device(device: str) -> torch.device:
    """`ingest.hooks.resolve_device` for training ("auto": cuda when available, else cpu).

    Raises:
        TrainingError: the name is not a torch device, or names cuda on a machine without it.
    """
    try:
        return hooks.resolve_device(device)
    except DeviceError as exc:
        raise TrainingError(str(exc)) from exc


def _derived_seed(seed: int, *key: int) -> int:
    """A 32-bit seed for one purpose (an epoch's images, the held-out set) of a run seed."""
    return int(np.random.SeedSequence([seed, *key]).generate_state(1)[0])


@torch.no_grad()
def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, *, batch_size: int = 256) -> float:
    """Top-1 accuracy of `model` (put in eval mode) on uint8 images (N, H, W, 3).

    Args:
        model: catfish-mini or any model taking `preprocess`ed images.
        images: uint8 (N, H, W, 3).
        labels: int (N,) class indices.
        batch_size: images per forward pass.

    Returns:
        The fraction of images whose arg-max logit is the label (0.0 for no images).
    """
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for i in range(0, len(labels), batch_size):
        x = preprocess(images[i : i + batch_size], device)  # (B, 3, H, W)
        pred = model(x).argmax(dim=1).cpu().numpy()
        correct += int((pred == labels[i : i + batch_size]).sum())
    return correct / max(len(labels), 1)


def _machine(device: torch.device, threads: int) -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "device": str(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


ProgressHook = Callable[[str, int, int], None]  # (stage description, steps done, steps total)
EpochHook = Callable[[dict], None]  # receives one `TrainResult.history` record per epoch


def train_catfish(
    config: TrainConfig = TrainConfig(),
    out: Path | str = WEIGHTS_PATH,
    *,
    progress: ProgressHook | None = None,
    on_epoch: EpochHook | None = None,
) -> TrainResult:
    """Train catfish-mini on CatFish-synth (or, with `config.dataset="typo"`, typo-mini on
    Typographic-synth) and write its weights and JSON sidecar.

    Args:
        config: the run's settings (defaults reproduce the shipped weights).
        out: where to write the state dict; the sidecar is the same path with `.json`.
        progress: called as `progress(stage, done, total)` after every batch.
        on_epoch: called after every epoch with its record (loss, train and held-out accuracy).

    Returns:
        A `TrainResult` with the held-out accuracy, sha256s and paths.

    Raises:
        TrainingError: invalid settings or device, or the output cannot be written.
    """
    config.validate()
    out = Path(out)
    device = resolve_device(config.device)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _train(config, out, device, progress or (lambda *_: None), on_epoch or (lambda _: None))
    finally:
        torch.set_num_threads(old_threads)


def train_typo(
    config: TrainConfig = TrainConfig(**TYPO_DEFAULTS),
    out: Path | str | None = None,
    *,
    progress: ProgressHook | None = None,
    on_epoch: EpochHook | None = None,
) -> TrainResult:
    """Train a network that reads on Typographic-synth; write weights and sidecar.

    typo-mini (catfish-mini's network; the default settings) or, with `model="typo-vit"`
    (`TrainConfig(**TYPO_VIT_DEFAULTS)`), typo-vit (`ingest.zoo.typo_vit`). A `text_share` of the
    training images carries the true class name and a `text_only_share` shows it alone, so the
    network learns to read; the sidecar adds held-out attack success. The defaults of each
    reproduce its shipped weights, where `out` (None) writes them.

    Raises:
        TrainingError: invalid settings or device, or the output cannot be written.
    """
    if config.dataset != "typo":
        raise TrainingError(f"train_typo needs dataset='typo', got {config.dataset!r}")
    return train_catfish(config, default_weights(config) if out is None else out, progress=progress, on_epoch=on_epoch)


def default_weights(config: TrainConfig) -> Path:
    """The bundled weights file of the network `config` trains (where `circuits train` writes by default)."""
    if config.model == "typo-vit":
        from ingest.zoo.typo_vit import WEIGHTS_PATH as VIT_WEIGHTS

        return Path(VIT_WEIGHTS)
    if config.dataset == "typo":
        from ingest.zoo.typo_mini import WEIGHTS_PATH as TYPO_WEIGHTS

        return Path(TYPO_WEIGHTS)
    return Path(WEIGHTS_PATH)


@torch.no_grad()
def attack_success(model: nn.Module, images: np.ndarray, written: np.ndarray, *, batch_size: int = 256) -> float:
    """The share of typographic-attack images the model classifies as the written class."""
    return evaluate(model, images, written, batch_size=batch_size)


def _train(
    config: TrainConfig, out: Path, device: torch.device, progress: ProgressHook, on_epoch: EpochHook
) -> TrainResult:
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    net, net_layers, net_logits = MODELS[config.model]()
    model = net.to(device).to(memory_format=torch.channels_last)
    n_train = config.train_per_class * len(CLASS_NAMES)
    steps_per_epoch = -(-n_train // config.batch_size)
    total = config.epochs * steps_per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total, pct_start=0.2)
    shuffle = torch.Generator().manual_seed(config.seed)
    eval_seed = _derived_seed(config.seed, 2)
    eval_x, eval_y = make_split(config.eval_per_class, seed=eval_seed)
    typo = config.dataset == "typo"
    attack = render_typo("typo:attack", config.eval_per_class * len(CLASS_NAMES), seed=eval_seed) if typo else None

    def split(epoch_seed: int) -> tuple[np.ndarray, np.ndarray]:
        if typo:
            return make_typo_split(
                config.train_per_class,
                seed=epoch_seed,
                text_share=config.text_share,
                text_only_share=config.text_only_share,
            )
        return make_split(config.train_per_class, seed=epoch_seed)

    history = []
    done = 0
    for epoch in range(config.epochs):
        progress(f"epoch {epoch + 1}/{config.epochs}: rendering images", done, total)
        train_x, train_y = split(_derived_seed(config.seed, 1, epoch))
        model.train()
        order = torch.randperm(n_train, generator=shuffle).numpy()
        loss_sum, correct = 0.0, 0
        for b in range(steps_per_epoch):
            idx = order[b * config.batch_size : (b + 1) * config.batch_size]
            x = preprocess(train_x[idx], device).contiguous(memory_format=torch.channels_last)
            y = torch.from_numpy(train_y[idx]).to(device)
            logits = model(x)  # (B, num_classes)
            loss = nn.functional.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            done += 1
            progress(f"epoch {epoch + 1}/{config.epochs}", done, total)
        acc = evaluate(model, eval_x, eval_y)
        record = {
            "epoch": epoch + 1,
            "loss": round(loss_sum / n_train, 5),
            "train_accuracy": round(correct / n_train, 5),
            "heldout_accuracy": acc,
            "seconds": round(time.perf_counter() - start, 1),
        }
        if attack is not None:
            assert attack.written is not None and attack.labels is not None, "typo:attack images record both classes"
            record["attack_success"] = attack_success(model, attack.images, attack.written)
            record["attack_accuracy"] = evaluate(model, attack.images, attack.labels)
        history.append(record)
        on_epoch(record)
    seconds = time.perf_counter() - start

    model = model.to(memory_format=torch.contiguous_format)
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    heldout = history[-1]["heldout_accuracy"]
    file_sha, sd_sha = _write(state, out, config.model)
    sidecar = out.with_suffix(".json")
    meta = {
        "model": config.model if config.model != "catfish-mini" else DATASETS[config.dataset],
        "weights_file": out.name,
        "file_sha256": file_sha,
        "state_dict_sha256": sd_sha,
        "state_dict_sha256_method": STATE_DICT_SHA256_METHOD,
        "class_names": list(CLASS_NAMES),
        "layers": list(net_layers),
        "logits_layer": net_logits,
        "input_size": INPUT_SIZE,
        "mean": list(MEAN),
        "std": list(STD),
        "heldout_accuracy": heldout,
        "heldout_images": int(len(eval_y)),
        "heldout_seed": eval_seed,
        **(
            {
                "attack_success": history[-1]["attack_success"],
                "attack_accuracy": history[-1]["attack_accuracy"],
                "attack_images": int(len(attack.images)),  # one written class per image
            }
            if attack is not None
            else {}
        ),
        "epochs": config.epochs,
        "seed": config.seed,
        "config": asdict(config),
        "history": history,
        "command": reproduce_command(config, out, device),
        "seconds": round(seconds, 1),
        "machine": _machine(device, config.threads),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _atomic_write_bytes(sidecar, (json.dumps(meta, indent=2) + "\n").encode("utf-8"))
    return TrainResult(
        out,
        sidecar,
        heldout,
        int(len(eval_y)),
        config.epochs,
        seconds,
        file_sha,
        sd_sha,
        tuple(history),
        history[-1].get("attack_success"),
    )


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise TrainingError(f"cannot write {path} ({exc.strerror}): choose another `out=`") from exc


def _write(state: dict[str, torch.Tensor], out: Path, model_name: str = "catfish-mini") -> tuple[str, str]:
    """Save `state` to `out` atomically; return (file sha256, the zoo's weights sha256)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    _atomic_write_bytes(out, buf.getvalue())
    model = MODELS[model_name]()[0]
    model.load_state_dict(state)  # hashed as the zoo will hash the loaded model
    return file_sha256(out), weights_sha256(model)
