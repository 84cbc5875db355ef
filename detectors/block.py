"""The detectors' observation type: one ChannelBlock per group of channels of a detector.

Every detector's forward model draws its observations as a ChannelBlock and every likelihood
reads one; ``joint.event.Event`` holds one per block name of the detector registry
(``detectors.registry``).
"""
from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["ChannelBlock"]


class ChannelBlock(NamedTuple):
    """Observations of every channel of one detector (a jax pytree).

    Attributes (each (n_channels,) or (B, n_channels))
    ----------
    signal : float [PE] — charge of the kept hit (0 where no hit).
    time : float [ns] — time of the kept hit (0 where no hit).
    hit : bool — the channel has at least one hit.
    valid : bool — the channel exists and is alive (False for dead/absent channels and padding).
    n_pulses : int — number of raw hits merged into the slot (0 where no hit).
    """

    signal: Any
    time: Any
    hit: Any
    valid: Any
    n_pulses: Any
