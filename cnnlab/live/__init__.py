"""Watch it learn: a live, local web view of training and a browser for finished runs
(lecture 003, "Method currently used": the convnetjs CIFAR-10 demo). See docs/LIVE.md.

:mod:`~cnnlab.live.channel` carries events to the page and controls back; :mod:`~cnnlab.live.server`
serves the page (standard library, server-sent events); :mod:`~cnnlab.live.snapshot` computes
what the page shows of a network; :mod:`~cnnlab.live.probe` answers "poke the network";
:mod:`~cnnlab.live.browse` is ``cnnlab serve``.
"""

from cnnlab.live.channel import Control, LiveChannel
from cnnlab.live.server import LiveServer

__all__ = ["Control", "LiveChannel", "LiveServer"]
