"""5.1 in, 5.1 out: the dub sits in the centre channel and the layout and rate are kept."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from dubbing_assets.core.ffmpeg import run_ffmpeg
from dubbing_assets.core.settings import load_settings
from dubbing_assets_tests.conftest import MEDIA
from dubbing_assets_tests.orchestration.pipeline_helpers import (
    materialization_metadata,
    prepare_episode,
    run_stages,
    step_failures,
)

pytestmark = [pytest.mark.slow]


def _to_surround(src: Path, dst: Path, layout: str = "5.1") -> None:
    """Dialogue and music into FC, a quieter copy in the front pair; the back (or side) pair and LFE silent."""
    back = "BL=0*c0|BR=0*c1" if layout == "5.1" else "SL=0*c0|SR=0*c1"
    codec = ["-c:a", "aac", "-b:a", "384k"] if layout == "5.1" else ["-c:a", "flac"]
    run_ffmpeg(["-i", src, "-map", "0:v", "-map", "0:a", "-map", "0:s", "-c:v", "copy", "-c:s", "copy",
                "-af", f"pan={layout}|FL=0.3*c0|FR=0.3*c1|FC=0.5*c0+0.5*c1|LFE=0*c0|{back}",
                *codec, dst], what=f"making a {layout} test clip")


@pytest.mark.parametrize("layout", ["5.1", "5.1(side)"])
def test_surround_source_gets_a_surround_dub(tmp_path: Path, layout: str) -> None:
    """5.1(side) (Blu-ray and broadcast E-AC-3, here FLAC) must be mixed as 5.1(side): the mix used to be
    handed no layout and gave every 6-channel dub the default 5.1. The delivered dub is AAC, whose
    six-channel configuration has one surround pair, which ffmpeg names back (BL/BR) on decoding."""
    surround = tmp_path / "ja_two_speakers_51.mkv"
    _to_surround(MEDIA / "ja_two_speakers.mkv", surround, layout)
    instance, key = prepare_episode(tmp_path / "home", clip=surround, episode="e51")
    settings = load_settings()
    result = run_stages(instance, key)
    assert result.success, step_failures(result)
    assert materialization_metadata(result, "dub_mix")["layout"] == layout
    out = settings.output / "alpha-series" / key / f"{key}.mkv"
    with av.open(str(out)) as container:
        dub = container.streams.audio[0]
        assert dub.codec_context.channels == 6 and dub.codec_context.sample_rate == 48000
        assert dub.metadata.get("language") == "eng"
        frames = [f.to_ndarray() for f in container.decode(dub)]
    audio = np.concatenate(frames, axis=1)  # planar: channels x samples
    order = [ch.name for ch in dub.codec_context.layout.channels]
    assert dub.codec_context.layout.name == "5.1", order  # AAC channel configuration 6
    energy = {name: float(np.sqrt(np.mean(audio[i] ** 2))) for i, name in enumerate(order)}
    assert energy["FC"] > 3 * max(energy["BL"], energy["BR"], 1e-6), energy
    assert energy["FC"] > energy["FL"], energy
