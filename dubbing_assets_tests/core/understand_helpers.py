"""Shared helpers for the understanding-stage tests (media, ASR, diarization, MT).

Plain functions (not fixtures) so each test module imports what it uses;
models are loaded once per test process through cached helpers.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from dubbing_assets.core.models import ModelRegistry

DATA = Path(__file__).resolve().parents[1] / "data"
MEDIA = DATA / "media"
JA = MEDIA / "ja_two_speakers.mkv"
EN = MEDIA / "en_monologue.mp4"


def ground_truth(media: Path) -> dict[str, Any]:
    """The `<name>.script.json` next to a fixture clip."""
    return json.loads((media.parent / f"{media.stem}.script.json").read_text(encoding="utf-8"))


def validation() -> dict[str, Any]:
    return json.loads((DATA / "validation.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _cache_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="dubbing-test-models-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def shared_registry() -> ModelRegistry:
    """Offline registry whose join cache lives for this test process only."""
    return ModelRegistry(cache_dir=_cache_dir(), models_dir=None, allow_download=False)


@lru_cache(maxsize=1)
def shared_transcriber() -> Any:
    """One Transcriber for the process, so each whisper model loads once."""
    from dubbing_assets.core.asr import Transcriber

    return Transcriber("auto", registry=shared_registry(), device="cpu")


# -- an episode with its subtitles beside it instead of inside -----------------

def episode_without_subtitles(out: Path, *, untag_subtitles: bool = False) -> Path:
    """The Japanese clip remuxed without its subtitle track (or with it, its language tag removed)."""
    from dubbing_assets.core.ffmpeg import run_ffmpeg

    maps = ["-map", "0"] if untag_subtitles else ["-map", "0:v", "-map", "0:a"]
    untag = ["-metadata:s:s:0", "language=und"] if untag_subtitles else []
    run_ffmpeg(["-i", JA, *maps, "-c", "copy", *untag, out], what="remuxing the test clip")
    return out


def english_sidecar(out: Path) -> Path:
    """The clip's own English subtitle track (ASS, Actor = speaker), extracted with ffmpeg."""
    from dubbing_assets.core.subtitles import extract_subtitle_stream

    return extract_subtitle_stream(JA, 2, out)


def japanese_sidecar(out: Path) -> Path:
    """The clip's Japanese lines (ground truth) at the English track's times, as SRT or ASS."""
    import pysubs2

    subs = pysubs2.load(str(english_sidecar(out.with_suffix(".tmp.ass"))))
    out.with_suffix(".tmp.ass").unlink()
    for event, line in zip(subs.events, ground_truth(JA)["lines"], strict=True):
        event.text = line["text_ja"]
    subs.save(str(out))
    return out
