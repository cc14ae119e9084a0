"""Test-only control over a session's "segment everything" runs.

:class:`BatchGate` wraps the session's one door to the engine
(``EngineLink.segment_everything``) so that a run pauses after a chosen batch, *after* the
proposals of that batch were handed to the session (and drawn) and outside every lock: the
test can then click, stop, start another run or change the image while the run is really
in the middle, deterministically (no sleeps, no timing).
"""

from __future__ import annotations

import threading
from typing import Any

from sam_widget.session.engine_link import EngineLink

__all__ = ["BatchGate", "SHAPES_PARAMS"]

# tiny_shapes on shapes_image(1): 7 proposals in 4 batches of 16 points
SHAPES_PARAMS = dict(points_per_side=8, pred_iou_thresh=0.6, stability_score_thresh=0.8, points_per_batch=16)


class BatchGate:
    """Pause runs after batch ``pause_after`` (1-based) until :meth:`release`.

    ``paused`` is set while a run waits; ``batches`` records, for every batch of every run,
    ``(run number, batch number, number of proposals, hook(...) result)``; ``hook`` (if
    given) is called after each batch's proposals were handed to the session, e.g. to look at
    what the views drew.
    """

    def __init__(self, monkeypatch: Any, pause_after: int | None = 1, hook: Any = None) -> None:
        self.pause_after = pause_after
        self.hook = hook
        self.paused = threading.Event()
        self._open = threading.Event()
        self.batches: list[tuple[int, int, int, Any]] = []
        self.runs = 0
        original = EngineLink.segment_everything
        gate = self

        def gated(link: EngineLink, page: Any, rgb: Any, params: Any, **kwargs: Any) -> Any:
            gate.runs += 1
            number, inner, count = gate.runs, kwargs["on_batch"], [0]

            def on_batch(props: Any) -> None:
                inner(props)
                count[0] += 1
                seen = gate.hook(props) if gate.hook is not None else None
                gate.batches.append((number, count[0], len(props), seen))
                if gate.pause_after is not None and count[0] == gate.pause_after and number == 1:
                    gate.paused.set()
                    if not gate._open.wait(60):
                        raise TimeoutError("BatchGate was never released")

            kwargs["on_batch"] = on_batch
            return original(link, page, rgb, params, **kwargs)

        monkeypatch.setattr(EngineLink, "segment_everything", gated)

    def wait_paused(self, timeout: float = 60.0) -> None:
        if not self.paused.wait(timeout):
            raise TimeoutError("the run never reached the gate")

    def release(self) -> None:
        self._open.set()
