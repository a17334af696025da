"""Modality- and length-grouped distributed sampler (reference §5.5, ``group_by_modality_length``), seeded.

Each epoch, from ``(seed, epoch)`` alone (so every rank computes the same global order):

1. Samples are split by modality: videos (negative lengths) and the rest (images and text, positive lengths).
2. Each group is shuffled and cut into *megabatches* of ``num_replicas * batch_size`` samples.
3. Each megabatch is sorted by length, longest first, and split into ``num_replicas`` per-rank batches of
   ``batch_size``, greedily giving the next sample to the batch with the smallest total length so far.
4. The megabatches are shuffled; the incomplete remainders of the groups are merged into one final megabatch.
5. Rank ``r`` iterates over the ``r``-th batch of every megabatch: the ranks' shards are disjoint.

With ``group_size`` G > 1 (not in the reference), step 2 cuts blocks of G megabatches instead; each block is sorted
by length and cut into G megabatches of neighbouring lengths before step 3, so that a batch's samples have about
the same length and little of the LLM's work goes to padding (with one rank, the reference's grouping only sorts
within a batch, which saves nothing). The blocks' megabatches are shuffled together in step 4, so batch lengths do
not follow a trend through the epoch.

Fixed (DECISIONS.md, reference §8.16-8.19): the order comes from a seeded generator, not the global RNG, so all
ranks agree; lengths are compared by magnitude, so balancing works for the negative video lengths; the last
partial megabatch of a modality is kept instead of dropped. When the sample count is not a multiple of
``num_replicas``, the final megabatch is padded with its own first samples (as ``DistributedSampler`` does) so that
every rank gets the same number of samples; ``drop_last=True`` drops the remainder instead.

Resuming mid-epoch: ``load_state_dict({"epoch": e, "consumed": n})`` makes the next iteration skip the first
``n`` samples of this rank's shard for epoch ``e``.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)


class ModalityLengthGroupedSampler(Sampler[int]):
    """Seeded, rank-consistent, modality- and length-grouped sampler.

    Args:
        lengths: per-sample length proxy; negative for videos, positive for images and text (the dataset's
            ``.lengths``).
        batch_size: per-rank batch size.
        num_replicas: number of ranks (world size).
        rank: this process's rank.
        seed: base seed; the order of epoch ``e`` depends only on ``(seed, e)``.
        group_by_length: sort within megabatches (``False``: only shuffle and group by modality).
        group_size: megabatches per length-sorted block (1 = the reference; see the module docstring).
        drop_last: drop samples that do not divide evenly among ranks instead of padding.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 42,
        group_by_length: bool = True,
        drop_last: bool = False,
        group_size: int = 1,
    ) -> None:
        if batch_size < 1 or num_replicas < 1 or not 0 <= rank < num_replicas or group_size < 1:
            raise ValueError(
                f"bad sampler setup: batch_size={batch_size}, num_replicas={num_replicas}, rank={rank}, "
                f"group_size={group_size}"
            )
        if len(lengths) < num_replicas and drop_last:
            raise ValueError(f"{len(lengths)} samples cannot be split among {num_replicas} ranks with drop_last")
        if len(lengths) == 0:
            raise ValueError("no samples to sample from")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.group_by_length = group_by_length
        self.drop_last = drop_last
        self.group_size = group_size if group_by_length else 1
        self.epoch = 0
        self.consumed = 0  # samples of this rank's shard to skip at the start of the next iteration

    # ---------------------------------------------------------------------------------------------- ordering
    def megabatches(self, epoch: int | None = None) -> list[list[list[int]]]:
        """The global order of an epoch: megabatches, each a list of ``num_replicas`` per-rank index lists."""
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, epoch])
        world, size = self.num_replicas, self.num_replicas * self.batch_size
        full: list[np.ndarray] = []
        rest: list[np.ndarray] = []
        video = self.lengths < 0
        for group in (np.flatnonzero(video), np.flatnonzero(~video)):
            if len(group) == 0:
                continue
            group = group[rng.permutation(len(group))]
            if self.group_size > 1:
                group = self._sort_blocks(group, size)
            n_full = len(group) // size
            full += [group[i * size : (i + 1) * size] for i in range(n_full)]
            rest.append(group[n_full * size :])
        order = rng.permutation(len(full))
        megas = [full[i] for i in order]
        tail = np.concatenate(rest) if rest else np.zeros(0, dtype=np.int64)
        if len(tail):
            tail = tail[rng.permutation(len(tail))]
            remainder = len(tail) % world
            if remainder and self.drop_last:
                tail = tail[: len(tail) - remainder]
            elif remainder:
                pool = np.concatenate([tail, *megas]) if megas else tail
                tail = np.concatenate([tail, np.resize(pool, world - remainder)])  # repeat samples to even out
            if len(tail):
                megas.append(tail)
        return [self._split(m) for m in megas]

    def _sort_blocks(self, group: np.ndarray, size: int) -> np.ndarray:
        """Sort each block of ``group_size`` megabatches (and the last, shorter block's whole megabatches) by length,
        longest first, so that each megabatch cut from it holds neighbouring lengths; the remainder stays as is."""
        block = size * self.group_size
        n_sorted = len(group) // size * size
        out = group.copy()
        for start in range(0, n_sorted, block):
            part = group[start : min(start + block, n_sorted)]
            out[start : start + len(part)] = part[np.argsort(-np.abs(self.lengths[part]), kind="stable")]
        return out

    def _split(self, mega: np.ndarray) -> list[list[int]]:
        """Split a megabatch into ``num_replicas`` equal per-rank lists, balancing total length."""
        world = self.num_replicas
        per_rank = len(mega) // world
        if not self.group_by_length:
            return [mega[r * per_rank : (r + 1) * per_rank].tolist() for r in range(world)]
        size = np.abs(self.lengths[mega])
        order = np.argsort(-size, kind="stable")  # longest first, by magnitude (fixes §8.18)
        mega, size = mega[order], size[order]
        chunks: list[list[int]] = [[] for _ in range(world)]
        heap = [(0, r) for r in range(world)]  # (total length, rank): the lightest open batch is on top
        for idx, length in zip(mega.tolist(), size.tolist(), strict=True):
            total, r = heapq.heappop(heap)
            chunks[r].append(idx)
            if len(chunks[r]) < per_rank:
                heapq.heappush(heap, (total + length, r))
        return chunks

    def rank_indices(self, epoch: int | None = None, rank: int | None = None) -> list[int]:
        """All indices of one rank's shard for an epoch, in iteration order."""
        rank = self.rank if rank is None else rank
        return [i for mega in self.megabatches(epoch) for i in mega[rank]]

    # ----------------------------------------------------------------------------------------------- Sampler
    def __iter__(self) -> Iterator[int]:
        indices = self.rank_indices()
        start, self.consumed = self.consumed, 0
        yield from indices[start:]

    def __len__(self) -> int:
        n = len(self.lengths)
        per_rank = n // self.num_replicas if self.drop_last else -(-n // self.num_replicas)
        return max(0, per_rank - self.consumed)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (the order of each epoch is different and reproducible)."""
        if epoch != self.epoch:
            self.consumed = 0
        self.epoch = epoch

    def state_dict(self, consumed: int) -> dict:
        """Position to resume from: the epoch and ``consumed``, the samples of this rank's shard the caller used.

        The caller counts them: the sampler cannot, since a DataLoader draws indices ahead of the batches it hands
        out (prefetching), and ``self.consumed`` is only a skip still to apply.
        """
        return {
            "epoch": self.epoch,
            "consumed": int(consumed),
            "seed": self.seed,
            "num_replicas": self.num_replicas,
            "group_size": self.group_size,
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume: the next iteration runs epoch ``state["epoch"]`` from sample ``state["consumed"]`` of the shard."""
        saved = (state.get("seed", self.seed), state.get("num_replicas", self.num_replicas))
        saved += (state.get("group_size", self.group_size),)
        if saved != (self.seed, self.num_replicas, self.group_size):
            logger.warning(
                "sampler state from seed %s / %s ranks / group_size %s resumed with seed %s / %s ranks / group_size "
                "%s: order differs",
                *saved,
                self.seed,
                self.num_replicas,
                self.group_size,
            )
        self.epoch = int(state["epoch"])
        self.consumed = int(state.get("consumed", 0))

    def skip(self, n: int) -> None:
        """Skip the first ``n`` samples of this rank's shard in the next iteration of the current epoch."""
        self.consumed = int(n)
