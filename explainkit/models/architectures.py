"""The ``nn.Module`` architectures of the model families (see docs/architecture.md, "Models").

Image modules take normalized ``[N,1,28,28]`` floats; text modules take ``(ids [N,T] long, mask [N,T]
bool)`` with ``.embedding`` the token embedding; tabular modules take standardized ``[N,F]``.
All return raw outputs ``[N,K]`` (logits, or ``[N,1]`` for regression).
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["MnistMLP", "MnistCNN", "SST2LSTM", "SST2Transformer", "TabularMLP"]


def _mask_or_all(ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The padding mask as bool (True = real token); every position is real when none is given."""
    if mask is None:
        return torch.ones_like(ids, dtype=torch.bool)
    return mask.to(torch.bool)


class MnistMLP(nn.Module):
    """Flatten -> 784 -> 128 -> 64 -> 10 with ReLU."""

    def __init__(self, hidden=(128, 64), n_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = 28 * 28
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            width = int(h)
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class MnistCNN(nn.Module):
    """Conv(1->32) ReLU MaxPool, Conv(32->64) ReLU MaxPool, Flatten, Linear(10)."""

    def __init__(self, channels=(32, 64), n_classes: int = 10, dropout: float = 0.25):
        super().__init__()
        c1, c2 = (int(c) for c in channels)
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3), nn.ReLU(), nn.MaxPool2d(2),      # 28 -> 26 -> 13
            nn.Conv2d(c1, c2, 3), nn.ReLU(), nn.MaxPool2d(2),     # 13 -> 11 -> 5
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(c2 * 5 * 5, n_classes))

    def forward(self, x):
        return self.head(self.features(x))


class SST2LSTM(nn.Module):
    """Embedding -> LSTM -> Linear on the last real hidden state (padding packed away)."""

    def __init__(self, vocab_size: int, embed_dim: int = 100, hidden: int = 256, n_classes: int = 2,
                 dropout: float = 0.3):
        super().__init__()
        self.embedding = nn.Embedding(int(vocab_size), int(embed_dim), padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(int(embed_dim), int(hidden), batch_first=True)
        self.fc = nn.Linear(int(hidden), n_classes)

    def forward(self, ids, mask=None):
        mask = _mask_or_all(ids, mask)
        emb = self.dropout(self.embedding(ids))
        # mask is right-padded (True first); the last real state is at length-1
        lengths = mask.sum(dim=1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        return self.fc(self.dropout(h[-1]))


class _EncoderLayer(nn.Module):
    """Post-norm transformer encoder layer with hand-written attention that also returns its weights."""

    def __init__(self, d: int, heads: int, ff: int, dropout: float):
        super().__init__()
        if d % heads:
            raise ValueError(f"d_model {d} is not divisible by heads {heads}")
        self.heads, self.dk = heads, d // heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff, d))
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mask):
        n, t, d = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, self.dk).permute(2, 0, 3, 1, 4)  # [N,H,T,dk] each
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.dk)                              # [N,H,T,T]
        scores = scores.masked_fill(~mask[:, None, None, :], torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=-1)                       # padding keys get exactly 0
        ctx = (self.drop(weights) @ v).transpose(1, 2).reshape(n, t, d)
        x = self.norm1(x + self.drop(self.out(ctx)))
        x = self.norm2(x + self.drop(self.ff(x)))
        return x, weights


class SST2Transformer(nn.Module):
    """Token + learned position embedding -> encoder layers -> masked mean pooling -> Linear."""

    def __init__(self, vocab_size: int, d_model: int = 64, heads: int = 4, layers: int = 2, ff: int = 128,
                 max_len: int = 64, n_classes: int = 2, dropout: float = 0.1):
        super().__init__()
        self.max_len = int(max_len)
        self.embedding = nn.Embedding(int(vocab_size), int(d_model), padding_idx=0)
        self.position = nn.Embedding(self.max_len, int(d_model))
        self.layers = nn.ModuleList(_EncoderLayer(int(d_model), int(heads), int(ff), dropout)
                                    for _ in range(int(layers)))
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(int(d_model), n_classes)

    def _encode(self, ids, mask):
        mask = _mask_or_all(ids, mask)
        mask = mask | ~mask.any(dim=1, keepdim=True)           # an all-padding row: attend to everything
        t = ids.shape[1]
        if t > self.max_len:
            raise ValueError(f"sequence of {t} tokens exceeds the model's max_len {self.max_len}")
        pos = torch.arange(t, device=ids.device)
        x = self.drop(self.embedding(ids) + self.position(pos)[None])
        weights = []
        for layer in self.layers:
            x, w = layer(x, mask)
            weights.append(w)
        return x, mask, torch.stack(weights, dim=1)             # [N,L,H,T,T]

    def forward(self, ids, mask=None):
        x, mask, _ = self._encode(ids, mask)
        m = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
        return self.fc(self.drop(pooled))

    def attention_weights(self, ids, mask=None):
        """Per-layer, per-head attention ``[N, L, H, T, T]`` from the same computation as forward."""
        return self._encode(ids, mask)[2]


class TabularMLP(nn.Module):
    """A small MLP on standardized features: n_in -> hidden... -> n_out."""

    def __init__(self, n_in: int, hidden=(32, 16), n_out: int = 2, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        width = int(n_in)
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = int(h)
        layers.append(nn.Linear(width, int(n_out)))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)
