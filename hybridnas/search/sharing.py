"""The run's dataset for the trials, shared through Ray's object store.

A fresh worker then skips the dataset's imports and decoding, and nodes of a
cluster need no copy of the files; datasets above ``SHARE_DATA_MAX_BYTES``
are left to the workers to load.
"""
from __future__ import annotations

import logging

log = logging.getLogger("hybridnas.search")

__all__ = ["share_bundle", "SHARE_DATA_MAX_BYTES"]

SHARE_DATA_MAX_BYTES = 512 * 2**20


def share_bundle(bundle, data_kw):
    """The loaded dataset for the trials (see the module docstring):
    ``(data key, [object ref])`` (the ref wrapped,
    so a worker fetches the bundle once and caches it), or None for a
    dataset too large to copy around (workers then load it themselves)."""
    import ray

    from .trial import data_key

    nbytes = 0
    for split in (bundle.train, bundle.val, getattr(bundle, "test", None)):
        nbytes += sum(int(getattr(v, "nbytes", 0) or 0) for v in vars(split).values()) \
            if split is not None and hasattr(split, "__dict__") else 0
    if nbytes > SHARE_DATA_MAX_BYTES:
        return None
    try:
        return data_key(data_kw), [ray.put(bundle)]
    except Exception as e:  # noqa: BLE001 - e.g. a dataset that does not pickle: workers load it
        log.info("dataset not shared with the trials (%s: %s)", type(e).__name__, e)
        return None
