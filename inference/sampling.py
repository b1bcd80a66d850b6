"""P x K batch sampling for metric learning, balanced by group (company) and optionally by category.

Every batch holds P classes with K samples each, all classes from one group: at inference the search
is filtered by company, so the embedder only ever has to tell apart products of one company, and that
is what each batch asks of it. With categories, a batch can further hold classes of one category
(telling one cookie from another is what matters; cola from cookies is easy).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class PKBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices: P classes x K samples, one group per batch.

    labels, groups, categories: one value per sample (categories may hold None: no category). A class
    (label) belongs to one group; its category is that of its first sample.
    p: classes per batch; a group with fewer than p classes gives batches of all its classes.
    k: samples per class; a class with fewer than k samples is sampled with replacement, otherwise
       without.
    one_category_per_batch: with categories given, a category with at least p classes gives batches of
       its own classes only; classes of smaller categories (or without one) share batches at group level.
    seed: the sampler is deterministic per seed; epoch e (``set_epoch``, or counted by each iteration)
       draws from seed and e.

    An epoch visits every class once, in ceil(classes / p) batches per pool of classes (a category
    or the rest of a group), the last batch of a pool topped up with other classes of that pool (or
    of its group); batch order is shuffled across groups.
    """

    def __init__(self, labels: Sequence[int], groups: Sequence[int], categories: Sequence[int | None] | None = None,
                 *, p: int, k: int = 4, seed: int = 0, one_category_per_batch: bool = False):
        super().__init__()
        labels_array = np.asarray(labels)
        groups_array = np.asarray(groups)
        if labels_array.ndim != 1 or len(labels_array) == 0:
            raise ValueError("PKBatchSampler needs a non-empty 1-d sequence of labels")
        if groups_array.shape != labels_array.shape:
            raise ValueError(f"{len(groups_array)} groups for {len(labels_array)} labels")
        if categories is not None and len(categories) != len(labels_array):
            raise ValueError(f"{len(categories)} categories for {len(labels_array)} labels")
        if p < 1 or k < 1:
            raise ValueError(f"p and k must be >= 1, got p={p}, k={k}")
        self.p, self.k, self.seed = p, k, seed
        self.one_category_per_batch = one_category_per_batch and categories is not None
        self.epoch = 0

        classes, inverse = np.unique(labels_array, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=len(classes)))[:-1]
        self._indices: list[np.ndarray] = np.split(order, bounds)  # per class, dataset indices
        first = order[np.concatenate([[0], bounds])]  # first sample of each class
        class_groups = groups_array[first]
        mixed = [classes[c] for c in range(len(classes)) if np.any(groups_array[self._indices[c]] != class_groups[c])]
        if mixed:
            raise ValueError(f"classes {mixed[:5]} have samples in more than one group")
        class_categories = [categories[i] for i in first] if categories is not None else [None] * len(classes)

        # Pools of class positions: per group, one per big-enough category, and one for the rest.
        self._pools: list[tuple[np.ndarray, np.ndarray]] = []  # (pool classes, group classes for topping up)
        for group in np.unique(class_groups):
            members = np.flatnonzero(class_groups == group)
            rest = members
            if self.one_category_per_batch:
                by_category: dict[object, list[int]] = {}
                for c in members:
                    if class_categories[c] is not None:
                        by_category.setdefault(class_categories[c], []).append(int(c))
                big = {cat: np.asarray(cs) for cat, cs in by_category.items() if len(cs) >= p}
                for cs in big.values():
                    self._pools.append((cs, members))
                in_big = np.concatenate(list(big.values())) if big else np.zeros(0, dtype=int)
                rest = np.setdiff1d(members, in_big)
            if len(rest):
                self._pools.append((rest, members))

    def set_epoch(self, epoch: int) -> None:
        """Draw the batches of this epoch next (for resuming, or several workers in step)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(-(-len(pool) // self.p) for pool, _ in self._pools)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        batches = []
        for pool, group in self._pools:
            shuffled = rng.permutation(pool)
            for start in range(0, len(shuffled), self.p):
                chosen = shuffled[start : start + self.p]
                missing = self.p - len(chosen)
                if missing:
                    chosen = np.concatenate([chosen, self._top_up(rng, chosen, pool, group, missing)])
                batches.append(chosen)
        for b in rng.permutation(len(batches)):
            yield [int(i) for c in batches[b] for i in self._draw(rng, c)]

    @staticmethod
    def _top_up(rng: np.random.Generator, chosen: np.ndarray, pool: np.ndarray, group: np.ndarray,
                missing: int) -> np.ndarray:
        """Up to `missing` other classes, from the pool first, then from the rest of the group."""
        extra = []
        for source in (pool, group):
            candidates = np.setdiff1d(source, np.concatenate([chosen, *extra]) if extra else chosen)
            take = min(missing - sum(len(e) for e in extra), len(candidates))
            if take > 0:
                extra.append(rng.choice(candidates, size=take, replace=False))
        return np.concatenate(extra).astype(int) if extra else np.zeros(0, dtype=int)

    def _draw(self, rng: np.random.Generator, class_position: int) -> np.ndarray:
        indices = self._indices[class_position]
        return rng.choice(indices, size=self.k, replace=len(indices) < self.k)
