"""A tiny ViT written as most ViT code writes it (a qkv/proj attention that declares `num_heads`),
for the token-model tests and as a `path/to/file.py:factory` user model (`build`).

16 px images, patch 4: 16 patch tokens after one class token (T = 17), width 16, 4 heads of 4
features, MLP width 32, 3 classes. `heads_out` (an identity before the output projection) lets
tests capture the concatenated heads as an ordinary (B, T, D) layer.
"""

import torch
from torch import nn

LAYERS = ("blocks.0.attn:heads", "blocks.0.mlp.act", "blocks.1.attn:heads", "blocks.1.mlp.act")


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.heads_out = nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-2, -1) / (d // self.num_heads) ** 0.5).softmax(-1)  # (B, H, T, T)
        z = (att @ v).transpose(1, 2).reshape(b, t, d)  # (B, T, D)
        return self.proj(self.heads_out(z))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    def __init__(self, dim: int = 16, heads: int = 4, depth: int = 2, hidden: int = 32, classes: int = 3):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.pos = nn.Parameter(torch.randn(1, 17, dim) * 0.5)
        self.blocks = nn.Sequential(*[Block(dim, heads, hidden) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)  # (B, 16, D)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1) + self.pos  # (B, 17, D)
        return self.head(self.norm(self.blocks(x))[:, 0])


def build() -> nn.Module:
    return TinyViT()


build.layers = LAYERS  # type: ignore[attr-defined]
build.class_names = ("a", "b", "c")  # type: ignore[attr-defined]
build.preprocessing = {"size": 16}  # type: ignore[attr-defined]
