"""ArcFace: additive angular margin head and loss (Deng et al., CVPR 2019).

The head keeps one unit-length weight vector per class. For an L2-normalised embedding at angle
theta_j to class j, the training logit of the true class y is ``s * cos(theta_y + m)`` and every
other logit ``s * cos(theta_j)``: the true class must win by an angle m, which pulls a class's
embeddings together on the hypersphere and pushes classes apart. At evaluation (no labels) the
logits are the plain scaled cosines.

cos(theta + m) stops decreasing once theta + m passes pi, so beyond that point the margin would
reward *larger* angles. The standard remedy (insightface) is used: where theta > pi - m the logit
becomes ``cos(theta) - m * sin(m)``, a monotonic continuation; ``easy_margin=True`` applies the
margin only where cos(theta) > 0 instead.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

# cos(theta) is clamped this far inside [-1, 1] so that sin(theta) = sqrt(1 - cos^2) keeps a finite gradient.
_COSINE_EPS = 1e-6


class ArcFaceHead(nn.Module):
    """Class weights and the additive angular margin.

    embedding_dim: size of the (already L2-normalised) embeddings.
    num_classes: number of training classes.
    scale: s, the radius the logits are scaled to (softmax temperature 1/s).
    margin: m in radians, added to the angle of the true class.
    easy_margin: apply the margin only where cos(theta) > 0 (else the threshold rule above).
    """

    def __init__(self, embedding_dim: int, num_classes: int, scale: float = 30.0, margin: float = 0.3,
                 easy_margin: bool = False):
        super().__init__()
        if embedding_dim < 1 or num_classes < 1:
            raise ValueError(f"ArcFace needs embedding_dim and num_classes >= 1, got {embedding_dim}, {num_classes}")
        if not 0 <= margin < math.pi / 2:
            raise ValueError(f"ArcFace margin must be in [0, pi/2) radians, got {margin}")
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_uniform_(self.weight)
        self.scale = scale
        self.margin = margin
        self.easy_margin = easy_margin
        self.cos_m = math.cos(margin)
        self.sin_m = math.sin(margin)
        self.threshold = math.cos(math.pi - margin)  # theta > pi - m  <=>  cos(theta) < threshold
        self.below_threshold_shift = math.sin(math.pi - margin) * margin  # = m sin(m)

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(n, num_classes) cosines between the embeddings and the normalised class weights."""
        return F.linear(embeddings, F.normalize(self.weight, dim=1))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Scaled logits (n, num_classes): with labels, the true class's logit is s*cos(theta+m);
        without labels (evaluation), s*cos(theta) for every class.

        embeddings must already be L2-normalised (the embedder's output is)."""
        cosine = self.cosine(embeddings)
        if labels is None:
            return cosine * self.scale
        cosine = cosine.clamp(-1 + _COSINE_EPS, 1 - _COSINE_EPS)
        sine = torch.sqrt(1.0 - cosine * cosine)
        with_margin = cosine * self.cos_m - sine * self.sin_m  # cos(theta + m)
        if self.easy_margin:
            with_margin = torch.where(cosine > 0, with_margin, cosine)
        else:
            with_margin = torch.where(cosine > self.threshold, with_margin, cosine - self.below_threshold_shift)
        true_class = F.one_hot(labels.long(), self.num_classes).bool()
        return torch.where(true_class, with_margin, cosine) * self.scale

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        """The ArcFace loss: mean cross-entropy over the margin-adjusted scaled logits."""
        return F.cross_entropy(self(embeddings, labels), labels.long(), label_smoothing=label_smoothing)
