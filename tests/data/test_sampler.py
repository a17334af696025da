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


def test_drop_last_and_bad_arguments():
    sampler = ModalityLengthGroupedSampler(_lengths(103), 2, 4, 0, drop_last=True)
    assert len(sampler) == 25 and len(list(sampler)) == 25
    with pytest.raises(ValueError):
        ModalityLengthGroupedSampler([1, 2], 2, 2, 2)
