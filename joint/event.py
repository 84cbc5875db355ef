"""Dense, fixed-shape event observations: one ChannelBlock per detector, batching and padding.

An Event holds, for each detector, arrays over ALL channels of its layout (hit or not), so that
every event of a detector combination has the same shapes and the fitter compiles once. Raw hits
(jagged lists of channel id, time, charge) are placed on their dense slots with `build_block`.

Shapes: unbatched blocks have arrays of shape (n_channels,); `stack_events` adds a leading batch
axis (B, n_channels). Units: signal [PE], time [ns].
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence

import numpy as np
import jax
import jax.numpy as jnp

from detectors import registry
from detectors.block import ChannelBlock


class Event(NamedTuple):
    """One event (or a batch, with a leading axis on every leaf).

    Attributes
    ----------
    blocks : {block name: ChannelBlock} of the detectors that took part (block names of the
        registry, ``detectors.registry.block_names()``: "km2a_ed", "km2a_md", "wcda", "wfcta",
        ...). A registered block is also an attribute (``event.km2a_ed``), None when absent.
        WFCTA channels are ordered tel_index · 1024 + pixel.
    run : int
    event_id : int
    time_mjd : float64 [MJD] (−1 for G4KM2A simulation without a time)
    truth : dict of ``true_*`` arrays (scalars per event) or None for real data.
    """

    blocks: dict
    run: Any
    event_id: Any
    time_mjd: Any
    truth: Optional[dict]

    def __getattr__(self, name):
        if name in registry.block_names():
            return self.blocks.get(name)
        raise AttributeError(f"Event has no attribute {name!r}")


def make_event(blocks: dict | None = None, *, run, event_id, time_mjd, truth=None,
               **named_blocks) -> Event:
    """An Event from block arrays (None blocks are left out): ``make_event(km2a_ed=..., run=...)``."""
    merged = dict(blocks or {})
    merged.update(named_blocks)
    unknown = set(merged) - set(registry.block_names())
    if unknown:
        raise ValueError(f"unknown detector blocks {sorted(unknown)}; registered: "
                         f"{', '.join(registry.block_names())}")
    return Event(blocks={k: v for k, v in merged.items() if v is not None}, run=run,
                 event_id=event_id, time_mjd=time_mjd, truth=truth)


def build_block(ids, times, pes, n_channels: int, index_map: Callable | None = None,
                valid=None) -> ChannelBlock:
    """Place jagged hits of one event on dense channel slots.

    When a channel has several hits (noise hits in the 10 µs readout window, or after-pulses),
    the hit with the LARGEST charge is kept (its time and charge fill the slot; ties keep the
    first one in input order) and ``n_pulses`` counts all hits of the channel. The largest pulse
    is the one most likely to be the shower particle; a summed charge would mix noise in.

    Parameters
    ----------
    ids : (n_hits,) int — channel ids (or dense indices if ``index_map`` is None).
    times : (n_hits,) [ns]
    pes : (n_hits,) [PE]
    n_channels : number of dense slots.
    index_map : callable ids -> dense indices (e.g. ``KM2ALayout.ed_index_of``); raises
        ValueError for unknown ids. None: ids are already dense indices.
    valid : optional (n_channels,) bool of live channels (default all True).

    Returns
    -------
    ChannelBlock of numpy arrays, each (n_channels,): signal float64, time float64, hit bool,
    valid bool, n_pulses int32.
    """
    ids = np.asarray(ids)
    times = np.asarray(times, np.float64)
    pes = np.asarray(pes, np.float64)
    if not (ids.shape == times.shape == pes.shape):
        raise ValueError(f"ids, times, pes must have the same shape, got {ids.shape}, "
                         f"{times.shape}, {pes.shape}")
    idx = np.asarray(index_map(ids) if index_map is not None else ids, np.int64)
    block = build_batch_block(np.zeros(idx.size, np.int64), idx, times, pes, 1, n_channels,
                              None if valid is None else np.asarray(valid, bool)[None])
    return ChannelBlock(*[x[0] for x in block])


def build_batch_block(rows, idx, times, pes, n_events: int, n_channels: int,
                      valid=None) -> ChannelBlock:
    """Vectorised :func:`build_block` for a whole batch: hit ``k`` of the flat arrays belongs to
    event ``rows[k]`` and dense channel ``idx[k]``. Same rule (the largest charge per channel is
    kept, ties keep the first in input order; ``n_pulses`` counts all).

    valid : optional (n_channels,) or (n_events, n_channels) bool. Returns (n_events, n_channels)
    numpy arrays.
    """
    rows = np.asarray(rows, np.int64)
    idx = np.asarray(idx, np.int64)
    times = np.asarray(times, np.float64)
    pes = np.asarray(pes, np.float64)
    if idx.size and (idx.min() < 0 or idx.max() >= n_channels):
        raise ValueError(f"dense channel index outside [0, {n_channels})")
    flat = rows * n_channels + idx
    size = n_events * n_channels
    signal = np.zeros(size)
    time = np.zeros(size)
    n_pulses = np.bincount(flat, minlength=size).astype(np.int32)
    if flat.size:
        # sort by (slot, -charge, input order); the first of each slot is the kept hit
        order = np.lexsort((np.arange(flat.size), -pes, flat))
        first = np.ones(flat.size, bool)
        first[1:] = flat[order][1:] != flat[order][:-1]
        keep = order[first]
        signal[flat[keep]] = pes[keep]
        time[flat[keep]] = times[keep]
    shape = (n_events, n_channels)
    signal, time, n_pulses = signal.reshape(shape), time.reshape(shape), n_pulses.reshape(shape)
    valid = np.ones(shape, bool) if valid is None else np.broadcast_to(np.asarray(valid, bool), shape)
    return ChannelBlock(signal=signal, time=time, hit=(n_pulses > 0) & valid, valid=valid.copy(),
                        n_pulses=np.where(valid, n_pulses, 0).astype(np.int32))


def empty_block(n_channels: int, valid=False) -> ChannelBlock:
    """A block without hits; ``valid`` False (padding) or True (all channels live, none hit)."""
    return ChannelBlock(signal=np.zeros(n_channels), time=np.zeros(n_channels),
                        hit=np.zeros(n_channels, bool), valid=np.full(n_channels, bool(valid)),
                        n_pulses=np.zeros(n_channels, np.int32))


def _stack(values, as_jax: bool):
    xp = jnp if as_jax else np
    return xp.stack([xp.asarray(v) for v in values])


def stack_events(events: Sequence[Event], as_jax: bool = True) -> Event:
    """Stack unbatched events into one batched Event (leading axis B on every leaf).

    All events must have the same detectors present (and the same truth keys, or all None);
    otherwise ValueError.
    """
    if len(events) == 0:
        raise ValueError("stack_events needs at least one event")
    out = {"blocks": {}}
    for f in sorted(set().union(*(e.blocks for e in events)), key=registry.block_names().index):
        present = [f in e.blocks for e in events]
        if not all(present):
            raise ValueError(f"detector block {f!r} present in some events but not all; "
                             "use empty_block(n, valid=False) for an absent detector")
        out["blocks"][f] = ChannelBlock(*[_stack([e.blocks[f][i] for e in events], as_jax)
                                          for i in range(len(ChannelBlock._fields))])
    for f in ("run", "event_id", "time_mjd"):
        out[f] = _stack([getattr(e, f) for e in events], as_jax)
    truths = [e.truth for e in events]
    if all(t is None for t in truths):
        out["truth"] = None
    elif any(t is None for t in truths):
        raise ValueError("truth present in some events but not all")
    else:
        keys = set(truths[0])
        if any(set(t) != keys for t in truths):
            raise ValueError("events have different truth keys")
        out["truth"] = {k: _stack([t[k] for t in truths], as_jax) for k in sorted(keys)}
    return Event(**out)


def batch_size(batch: Event) -> int:
    """Leading-axis length of a batched Event."""
    return int(np.shape(batch.event_id)[0])


def pad_batch(batch: Event, size: int):
    """Pad a batched Event to ``size`` events with fully invalid events.

    Padding events have every channel ``valid=False`` and ``hit=False``, zero signals and times,
    run = event_id = −1, time_mjd = NaN and truth values NaN (so no detector term contributes).

    Returns
    -------
    (padded Event, mask (size,) bool — True for real events).
    """
    n = batch_size(batch)
    if size < n:
        raise ValueError(f"cannot pad a batch of {n} events to {size}")
    n_pad = size - n

    def pad_leaf(x, fill):
        xp = jnp if isinstance(x, jax.Array) else np
        x = xp.asarray(x)
        filler = xp.full((n_pad,) + x.shape[1:], fill, dtype=x.dtype)
        return xp.concatenate([x, filler], axis=0)

    out = {"blocks": {f: ChannelBlock(
        signal=pad_leaf(b.signal, 0), time=pad_leaf(b.time, 0), hit=pad_leaf(b.hit, False),
        valid=pad_leaf(b.valid, False), n_pulses=pad_leaf(b.n_pulses, 0))
        for f, b in batch.blocks.items()}}
    out["run"] = pad_leaf(batch.run, -1)
    out["event_id"] = pad_leaf(batch.event_id, -1)
    out["time_mjd"] = pad_leaf(batch.time_mjd, np.nan)
    out["truth"] = None if batch.truth is None else {
        k: pad_leaf(v, np.nan if np.issubdtype(np.asarray(v).dtype, np.floating) else -1)
        for k, v in batch.truth.items()}
    mask = np.concatenate([np.ones(n, bool), np.zeros(n_pad, bool)])
    return Event(**out), mask
