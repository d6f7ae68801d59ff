"""Serving on top of the :mod:`asr` engine: batching scheduler, WebSocket protocol and server,
file and microphone clients, browser page.

The per-stream state (:class:`asr.Stream`) and batched stepping (:func:`asr.decode_streams`)
belong to the engine; this package only imports it, never the reverse.
"""
