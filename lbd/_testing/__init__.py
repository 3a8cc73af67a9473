"""Test oracles and helpers: plain, slow, per-event definitions the product's fast paths are held to.

Outside the product's import path: no module of lbd imports from here (STYLE.md).  The tests and
the benchmarks do.

* filter_reference: a filter expression evaluated event by event, in plain Python, and the
  kernel's push-down modelled event by event.
"""
