"""The grouped sampler: one global order on every rank, disjoint equal shards, grouping, resume."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from videopanda.data.sampler import ModalityLengthGroupedSampler


def _lengths(n=103, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 200, n)
    lengths[rng.random(n) < 0.6] *= -1  # ~60% videos (negative), the rest images / text
    return lengths.tolist()


def test_every_rank_computes_the_same_global_order_and_gets_a_disjoint_shard():
    lengths = _lengths()
    world = 4
    samplers, orders, shards = [], [], []
    numpy_state, python_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng():
        for r in range(world):  # each simulated rank with different global RNG states: they must not matter
            torch.manual_seed(1000 + r)
            np.random.seed(1000 + r)
            random.seed(1000 + r)
            sampler = ModalityLengthGroupedSampler(lengths, 3, world, r, seed=5)
            orders.append(sampler.megabatches(epoch=2))
            sampler.set_epoch(2)
            shards.append(list(sampler))
            samplers.append(sampler)
    np.random.set_state(numpy_state)
    random.setstate(python_state)
    assert all(order == orders[0] for order in orders)  # simulated ranks agree on the global order
    assert len({len(shard) for shard in shards}) == 1 and len(shards[0]) == len(samplers[0]) == 26
    flat = [i for shard in shards for i in shard]
    assert set(flat) == set(range(103))  # nothing dropped (the reference dropped partial megabatches)
    assert len(flat) - len(set(flat)) == 1  # 103 -> 104: one repeated to even out 4 ranks
    for r in range(world):  # rank r iterates over the r-th part of each megabatch
        assert shards[r] == [i for mega in orders[0] for i in mega[r]]


def test_full_megabatches_hold_one_modality_sorted_and_balanced():
    lengths = _lengths(200)
    sampler = ModalityLengthGroupedSampler(lengths, 4, 2, 0, seed=1)
    megas = sampler.megabatches()
    signs = np.sign(np.asarray(lengths))
    for mega in megas[:-1]:
        flat = [i for part in mega for i in part]
        assert len(flat) == 8 and len(set(signs[flat])) == 1  # one modality per megabatch
        for part in mega:  # longest first within every rank's batch (by magnitude, videos included)
            sizes = [abs(lengths[i]) for i in part]
            assert sizes == sorted(sizes, reverse=True)
        totals = [sum(abs(lengths[i]) for i in part) for part in mega]
        assert max(totals) - min(totals) <= max(abs(lengths[i]) for i in flat)  # greedy balancing


def test_order_depends_on_seed_and_epoch_only():
    lengths = _lengths()
    a = ModalityLengthGroupedSampler(lengths, 2, 1, 0, seed=3)
    b = ModalityLengthGroupedSampler(lengths, 2, 1, 0, seed=3)
    assert list(a) == list(b)
    epoch0 = list(a)
    a.set_epoch(1)
    assert list(a) != epoch0 and sorted(a) == sorted(epoch0)
    assert list(ModalityLengthGroupedSampler(lengths, 2, 1, 0, seed=4)) != epoch0


def test_resume_mid_epoch_continues_with_the_same_samples():
    lengths = _lengths()
    full = ModalityLengthGroupedSampler(lengths, 3, 2, 1, seed=9)
    full.set_epoch(3)
    order = list(full)
    state = full.state_dict(consumed=12)
    resumed = ModalityLengthGroupedSampler(lengths, 3, 2, 1, seed=9)
    resumed.load_state_dict(state)
    resumed.set_epoch(3)  # the loop sets the epoch again on resume: the position is kept
    assert len(resumed) == len(order) - 12
    assert list(resumed) == order[12:]
    assert list(resumed) == order  # the skip applies once
    with pytest.raises(TypeError):
        full.state_dict()  # only the caller knows what it used: a DataLoader draws indices ahead of its batches


def test_resume_with_another_group_size_warns_that_the_order_differs(caplog):
    lengths = _lengths()
    state = ModalityLengthGroupedSampler(lengths, 3, 1, 0, seed=9, group_size=4).state_dict(consumed=6)
    with caplog.at_level("WARNING"):
        ModalityLengthGroupedSampler(lengths, 3, 1, 0, seed=9, group_size=4).load_state_dict(state)
        assert not caplog.records
        ModalityLengthGroupedSampler(lengths, 3, 1, 0, seed=9).load_state_dict(state)
    assert "group_size 4 resumed with" in caplog.text and "order differs" in caplog.text


def test_drop_last_and_bad_arguments():
    sampler = ModalityLengthGroupedSampler(_lengths(103), 2, 4, 0, drop_last=True)
    assert len(sampler) == 25 and len(list(sampler)) == 25
    with pytest.raises(ValueError):
        ModalityLengthGroupedSampler([1, 2], 2, 2, 2)


def _padded_tokens(sampler, lengths, epoch=0):
    """Tokens the LLM would process per epoch: every rank's batch padded to its longest sample."""
    return sum(max(abs(lengths[i]) for i in part) * len(part) for mega in sampler.megabatches(epoch) for part in mega)


@pytest.mark.parametrize("world", [1, 2])
def test_group_size_sorts_blocks_of_megabatches_and_keeps_every_sample_once(world):
    # two length clusters (visual tokens of landscape vs square clips), videos only, shuffled
    rng = np.random.default_rng(0)
    lengths = (-np.where(rng.random(160) < 0.5, 130, 170) - rng.integers(0, 5, 160)).tolist()
    plain = ModalityLengthGroupedSampler(lengths, 4, world, 0, seed=3)
    grouped = ModalityLengthGroupedSampler(lengths, 4, world, 0, seed=3, group_size=40 // world)
    for epoch in (0, 1):
        shards = [grouped.rank_indices(epoch, r) for r in range(world)]
        assert sorted(i for shard in shards for i in shard) == list(range(160))  # a permutation, disjoint shards
    megas = grouped.megabatches(0)
    mixed = [m for m in megas if len({abs(lengths[i]) >= 150 for part in m for i in part}) > 1]
    assert len(mixed) <= 1  # one block covers the set: only the megabatch at the cluster boundary mixes
    assert len(set(map(len, (m[0] for m in megas)))) == 1  # equal batches
    assert _padded_tokens(grouped, lengths) < 0.93 * _padded_tokens(plain, lengths)
    # the sorted megabatches are shuffled, not served longest first
    firsts = [max(abs(lengths[i]) for i in m[0]) for m in megas]
    assert firsts != sorted(firsts, reverse=True)
    again = ModalityLengthGroupedSampler(lengths, 4, world, 0, seed=3, group_size=40 // world)
    assert again.megabatches(0) == grouped.megabatches(0)  # a function of (seed, epoch) alone


def test_group_size_is_ignored_without_length_grouping_and_validated():
    lengths = _lengths(64)
    a = ModalityLengthGroupedSampler(lengths, 4, 1, 0, seed=2, group_by_length=False, group_size=8)
    b = ModalityLengthGroupedSampler(lengths, 4, 1, 0, seed=2, group_by_length=False)
    assert a.megabatches(0) == b.megabatches(0)
    with pytest.raises(ValueError, match="group_size"):
        ModalityLengthGroupedSampler(lengths, 4, 1, 0, group_size=0)
