"""The runtime every reconciler is handed: one per operator process.

Built in layers, one file each, every layer using those below it:
  base.py       the clients, the cache and the target index it holds
  reads.py      reading through the cache
  writes.py     apply what changed, create children, prune, release fields
  claims.py     fields on a target we do not own: finalizer, note, release
  status.py     conditions and Events; a reported failure (TemporaryError)
  admission.py  valid spec, effective for its target (oldest wins), target exists
Reconcilers are plain synchronous functions (the kubernetes client blocks), run in
worker threads by the work queues (scheduling.py).
"""

from __future__ import annotations

from appinfra.controller.admission import Admission


class Runtime(Admission):
    """Everything above, as one object: `rt.read`, `rt.ensure_child`, `rt.reject`..."""
