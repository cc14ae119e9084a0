"""What a session's status line says, as data (a view formats it; a script prints ``.text()``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .core import Session

__all__ = ["SessionStatus", "duration"]


def duration(seconds: float) -> str:
    """A time for the status line: milliseconds below one second ("40 ms", never "0.0 s"),
    else seconds with one decimal ("2.3 s")."""
    if seconds < 0.9995:
        return f"{max(0.0, seconds) * 1000:.0f} ms"
    return f"{seconds:.1f} s"


@dataclass(frozen=True)
class SessionStatus:
    """``phase``: ``"loading"`` (the model), ``"encoding"`` (this image), ``"ready"``,
    ``"failed"`` (the model could not load) or ``"unreadable"`` (this image); ``problem``
    says why for the last two. ``message``: the last action's error (or None).
    ``encode_s`` is None when the embedding came from a cache (``prefetched``: computed in the
    background while another image was shown). ``everything``: what the current image's
    "segment everything" proposals are doing (progress, counts, no proposals, a failure)."""

    model: str
    device: str
    image_hw: tuple[int, int] | None
    phase: str
    elapsed_s: float
    problem: str | None
    encode_s: float | None
    prefetched: bool
    decode_s: float | None
    message: str | None
    index: int
    count: int
    name: str
    editing: str | None
    notice: str | None = None  # e.g. "restored 12 objects on 3 images from work.json"
    everything: tuple[str, bool] | None = None  # the proposals' line: (text, is_error)


    @classmethod
    def of(cls, s: "Session") -> "SessionStatus":
        page = s._page(s.index)
        hw = None if page.error is not None else s.image_size(s.index)
        now = time.perf_counter()
        elapsed = now - (page.encode_started or now)
        if s.model_error is not None:
            phase, problem = "failed", str(s.model_error)
        elif page.error is not None:
            phase, problem = "unreadable", page.error
        elif not page.ready.is_set():
            phase, problem = ("encoding" if s.segmenter is not None else "loading"), None
        else:
            phase, problem = "ready", None
        stats = s._engine.stats
        snap = s.current
        i = snap.editing_index
        return cls(
            model=str(s._engine.label),
            device=s._engine.device,
            image_hw=hw,
            phase=phase,
            elapsed_s=elapsed,
            problem=problem,
            encode_s=page.encode_s,
            prefetched=page.prefetched,
            decode_s=stats.get("last_decode_s"),
            message=s.error,
            index=s.index,
            count=len(s.images),
            name=s.name,
            editing=snap.objects[i].label if i is not None else None,
            notice=s.notice,
            everything=s._everything.status_part(),

        )

    def parts(self) -> list[tuple[str, bool]]:
        """The status line's pieces as ``(text, is_error)``."""
        out: list[tuple[str, bool]] = [(self.model, False), (self.device, False)]
        if self.image_hw is not None:
            out.append((f"{self.image_hw[1]}×{self.image_hw[0]}", False))
        if self.phase == "loading":
            out.append((f"loading model… {duration(self.elapsed_s)}", False))
        elif self.phase == "encoding":
            out.append((f"encoding… {duration(self.elapsed_s)}", False))
        elif self.phase == "failed":
            out.append((f"not ready: {self.problem}", True))
        elif self.phase == "unreadable":
            out.append((f"cannot show this image: {self.problem}", True))
        else:
            cached = "embedding prefetched" if self.prefetched else "embedding cached"
            out.append((f"encode {duration(self.encode_s)}" if self.encode_s is not None else cached, False))
            ms = "–" if self.decode_s is None else duration(self.decode_s)
            out.append((f"last decode {ms}", False))
        if self.notice:
            out.append((self.notice, False))
        if self.editing is not None:
            out.append((f"editing “{self.editing}”: clicks refine it, Enter replaces it, Esc stops", False))
        if self.everything is not None:
            out.append(self.everything)
        if self.message:
            out.append((self.message, True))
        return out

    def text(self) -> str:
        """The status line as plain text."""
        return " · ".join(t for t, _ in self.parts())
