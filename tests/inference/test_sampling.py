from collections import Counter

import numpy as np
import pytest
from torch.utils.data import DataLoader

from inference.sampling import PKBatchSampler


def dataset(classes_per_group: dict[int, int], samples_per_class: int = 6, small: dict[int, int] | None = None):
    """(labels, groups): class ids numbered across groups; `small` gives some classes fewer samples."""
    labels, groups = [], []
    label = 0
    for group, count in classes_per_group.items():
        for _ in range(count):
            n = (small or {}).get(label, samples_per_class)
            labels += [label] * n
            groups += [group] * n
            label += 1
    return np.array(labels), np.array(groups)


def test_each_batch_holds_p_classes_times_k_samples_of_one_group():
    labels, groups = dataset({0: 10, 1: 7, 2: 5})
    sampler = PKBatchSampler(labels, groups, p=4, k=3, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3 + 2 + 2
    for batch in batches:
        counts = Counter(labels[batch].tolist())
        assert len(counts) == 4 and set(counts.values()) == {3}
        assert len(set(groups[batch].tolist())) == 1
        assert len(batch) == 12


def test_an_epoch_covers_every_class_once_topping_up_the_last_batch_of_a_group():
    labels, groups = dataset({0: 10, 1: 7})
    sampler = PKBatchSampler(labels, groups, p=4, k=2, seed=1)
    seen = Counter()
    for batch in sampler:
        seen.update(set(labels[batch].tolist()))
    assert set(seen) == set(range(17))
    # 10 classes in batches of 4: 2 classes of group 0 appear twice; same for 1 class of group 1.
    assert sorted(seen.values()) == [1] * 14 + [2] * 3


def test_a_class_with_fewer_than_k_samples_is_sampled_with_replacement_others_without():
    labels, groups = dataset({0: 4}, samples_per_class=5, small={2: 2})
    sampler = PKBatchSampler(labels, groups, p=4, k=4, seed=0)
    for _ in range(5):
        (batch,) = list(sampler)
        by_class = {c: [i for i in batch if labels[i] == c] for c in range(4)}
        assert len(by_class[2]) == 4 and set(by_class[2]) <= set(np.flatnonzero(labels == 2).tolist())
        assert len(set(by_class[2])) <= 2  # only two samples to draw from
        for c in (0, 1, 3):
            assert len(set(by_class[c])) == 4  # distinct samples


def test_a_group_with_fewer_than_p_classes_gives_a_batch_of_all_its_classes():
    labels, groups = dataset({0: 2, 1: 6})
    batches = list(PKBatchSampler(labels, groups, p=4, k=2, seed=0))
    small = [b for b in batches if groups[b[0]] == 0]
    assert len(small) == 1 and Counter(labels[small[0]].tolist()) == {0: 2, 1: 2}


def test_the_same_seed_gives_the_same_batches_and_epochs_differ():
    labels, groups = dataset({0: 12, 1: 9})
    first = PKBatchSampler(labels, groups, p=4, k=2, seed=7)
    second = PKBatchSampler(labels, groups, p=4, k=2, seed=7)
    epoch0, epoch1 = list(first), list(first)
    assert list(second) == epoch0 and list(second) == epoch1
    assert epoch0 != epoch1
    assert list(PKBatchSampler(labels, groups, p=4, k=2, seed=8)) != epoch0
    second.set_epoch(1)
    assert list(second) == epoch1


def test_batches_of_different_groups_are_interleaved():
    labels, groups = dataset({0: 40, 1: 40})
    order = [int(groups[b[0]]) for b in PKBatchSampler(labels, groups, p=4, k=2, seed=0)]
    assert sorted(order) == [0] * 10 + [1] * 10
    assert order != sorted(order) and order != sorted(order, reverse=True)


def test_one_category_per_batch_keeps_big_categories_apart_and_pools_small_ones():
    # Group 0: category "a" has 6 classes, "b" 4, "c" 1 and one class without a category. Group 1: 4 classes of "a".
    labels, groups = dataset({0: 12, 1: 4}, samples_per_class=3)
    class_category = ["a"] * 6 + ["b"] * 4 + ["c", None] + ["a"] * 4
    categories = [class_category[label] for label in labels]
    sampler = PKBatchSampler(labels, groups, categories, p=4, k=2, seed=3, one_category_per_batch=True)
    batches = list(sampler)
    # a: 2 batches, b: 1, the pooled rest (c + None): 1 topped up from the group, group 1's a: 1.
    assert len(batches) == len(sampler) == 5
    kinds = Counter()
    seen = set()
    for batch in batches:
        assert len(set(groups[batch].tolist())) == 1
        batch_classes = sorted(set(labels[batch].tolist()))
        assert len(batch_classes) == 4
        seen.update(batch_classes)
        batch_categories = {class_category[c] for c in batch_classes}
        if {10, 11} & set(batch_classes):
            assert {10, 11} <= set(batch_classes)  # the pooled classes share one batch, topped up
            kinds["pool"] += 1
        else:
            assert len(batch_categories) == 1
            kinds[(int(groups[batch[0]]), batch_categories.pop())] += 1
    assert kinds == {(0, "a"): 2, (0, "b"): 1, "pool": 1, (1, "a"): 1}
    assert seen == set(range(16))


def test_without_the_flag_categories_do_not_split_batches():
    labels, groups = dataset({0: 8}, samples_per_class=2)
    categories = [int(label) % 2 for label in labels]
    batches = list(PKBatchSampler(labels, groups, categories, p=4, k=2, seed=0))
    assert len(batches) == 2
    assert any(len({categories[i] for i in batch}) == 2 for batch in batches)


def test_it_drives_a_data_loader_as_its_batch_sampler():
    labels, groups = dataset({0: 6}, samples_per_class=3)
    loader = DataLoader(list(range(len(labels))), batch_sampler=PKBatchSampler(labels, groups, p=3, k=2, seed=0))
    batches = [batch.tolist() for batch in loader]
    assert len(batches) == 2 and all(len(b) == 6 for b in batches)


def test_a_class_in_two_groups_and_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="more than one group"):
        PKBatchSampler([0, 0, 1], [0, 1, 1], p=2)
    with pytest.raises(ValueError, match="groups"):
        PKBatchSampler([0, 0, 1], [0, 0], p=2)
    with pytest.raises(ValueError, match="categories"):
        PKBatchSampler([0, 0, 1], [0, 0, 0], [1], p=2)
    with pytest.raises(ValueError, match="p and k"):
        PKBatchSampler([0, 1], [0, 0], p=0)
