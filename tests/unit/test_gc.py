"""Once a process has started, its garbage collector is settled (kit.runtime.settle_gc):
what startup built is frozen out of collections, and young collections are spaced."""

from __future__ import annotations

import gc

from paysys.kit.runtime import settle_gc
from paysys.kit.settings import KitSettings


def test_settle_gc_freezes_what_startup_built_and_spaces_collections() -> None:
    before = gc.get_threshold()
    try:
        settle_gc(KitSettings.model_fields["gc_threshold"].default)
        assert gc.get_threshold() == (50_000, 20, 100)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
