"""Turns, not whisper segments: an ASR line holding two speakers is split where the voice changes.

On the three-speaker clip (built at test time) whisper base gives one line per turn; two neighbouring
turns of different speakers (Taro, then Yui after a 0.35 s gap) are joined into one line here, words and
all, as whisper does when the gap is short. `split_turns` must cut it at Yui's onset and leave every
one-speaker line whole, including Mika's, which has a pause of its own in the middle.
"""

from __future__ import annotations

from dubbing_assets.core.diarize import split_turns
from dubbing_assets.core.media import load_audio_mono16k
from dubbing_assets.core.model import Line, Script
from dubbing_assets_tests.core.understand_helpers import shared_transcriber


def test_a_line_with_two_speakers_is_split_at_the_change(three_speakers) -> None:
    clip, turns = three_speakers
    audio = load_audio_mono16k(clip)
    asr = shared_transcriber().transcribe(audio, language="ja")
    assert len(asr.lines) == len(turns), [ln.text for ln in asr.lines]
    untouched, splits = split_turns(asr, audio)
    assert splits == [] and len(untouched.lines) == len(turns)  # no false split (Mika's pause included)

    a, b = asr.lines[2], asr.lines[3]  # Taro, then Yui
    merged = Line(index=2, start=a.start, end=b.end, speaker=a.speaker, text=a.text + b.text,
                  words=[*a.words, *b.words])
    joined = Script(asr.language, asr.source, [*asr.lines[:2], merged, *asr.lines[4:]], dict(asr.meta))
    for i, line in enumerate(joined.lines):
        line.index = i
    fixed, splits = split_turns(joined, audio)
    print(f"\nsplits {splits}; Yui's turn starts {turns[3].start}")
    assert len(fixed.lines) == len(turns) and len(splits) == 1
    assert abs(splits[0]["at_s"] - turns[3].start) <= 0.3
    assert fixed.lines[2].text == a.text.strip() and fixed.lines[3].text == b.text.strip()
    assert fixed.lines[2].end <= turns[3].start and fixed.lines[3].start >= turns[2].end
    assert [ln.index for ln in fixed.lines] == list(range(len(turns)))
