"""Streaming recognition: per-stream state (:class:`Stream`), WebSocket server and clients."""

from .stream import Stream, StreamClosedError, decode_streams

__all__ = ["Stream", "StreamClosedError", "decode_streams"]
