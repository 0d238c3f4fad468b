"""Translation engines: passthrough, subtitles alignment, CTranslate2 on a tiny random Marian model,
the auto rule and the glossary check. (whisper-translate runs in test_asr.py, marked slow.)"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

from dubbing_assets.core import plugins
from dubbing_assets.core.contracts import Line, Script, TranslatedLine, Translation
from dubbing_assets.core.models import ModelRegistry
from dubbing_assets.core.translate import (
    CTranslate2Translator,
    PassthroughTranslator,
    SubtitleTranslator,
    Translator,
    WhisperTranslator,
    apply_glossary,
    choose_engine,
    get_translator,
)
from dubbing_assets.errors import ConfigError, ModelNotFoundError
from dubbing_assets_tests.core.understand_helpers import JA, ground_truth


def _ja_script(speaker: str | None = None) -> Script:
    return Script(language="ja", source="asr", lines=[
        Line(index=g["index"], start=g["start"], end=g["end"], speaker=speaker or g["speaker"],
             text=g["text_ja"]) for g in ground_truth(JA)["lines"]])


def test_registry_and_protocol() -> None:
    names = set(plugins.declared(plugins.TRANSLATOR))
    assert names == {"passthrough", "subtitles", "whisper-translate", "ctranslate2"}
    for name in names:
        assert isinstance(get_translator(name), Translator)
    with pytest.raises(ConfigError, match="Unknown translation engine"):
        get_translator("babelfish")


def test_passthrough_copies_text_and_timing() -> None:
    script = _ja_script()
    out = PassthroughTranslator().translate(script, "ja")
    assert [ln.text for ln in out.lines] == [ln.text for ln in script.lines]
    timing = [(x.start, x.end, x.speaker) for x in script.lines]
    assert [(ln.start, ln.end, ln.speaker) for ln in out.lines] == timing
    assert Translation.from_dict(out.to_dict()) == out


def test_subtitles_engine_aligns_the_episode_track_by_time() -> None:
    out = SubtitleTranslator().translate(_ja_script(speaker="unknown"), "en", media=JA)
    truth = ground_truth(JA)["lines"]
    assert [ln.text for ln in out.lines] == [t["text_en"] for t in truth]
    # Speakers unknown to the script are filled from the Actor field.
    assert [ln.speaker for ln in out.lines] == ["Aiko", "Kenji", "Aiko", "Kenji"]
    assert out.meta["unaligned_lines"] == [] and out.meta["unmatched_events"] == []


def test_subtitles_engine_reports_uncovered_lines_and_merges_split_events() -> None:
    script = Script(language="ja", source="asr", lines=[
        Line(0, 1.0, 4.0, "spk0", "a"), Line(1, 10.0, 11.0, "spk1", "b")])
    events = Script(language="en", source="subtitles", lines=[
        Line(0, 1.0, 2.4, "Aiko", "First half,"), Line(1, 2.5, 4.1, "Aiko", "second half."),
        Line(2, 30.0, 31.0, "Kenji", "Far away.")])
    out = SubtitleTranslator().translate(script, "en", subtitles=events)
    assert [ln.text for ln in out.lines] == ["First half, second half.", ""]
    assert out.meta["unaligned_lines"] == [1] and out.meta["unmatched_events"] == [2]
    assert out.lines[0].speaker == "spk0"  # a known speaker is kept


def test_whisper_translate_refuses_other_targets() -> None:
    with pytest.raises(ConfigError, match="only produces English"):
        WhisperTranslator().translate(_ja_script(), "fr", audio=JA)


def test_auto_rule(tmp_path: Path) -> None:
    script = _ja_script()
    empty = ModelRegistry(cache_dir=tmp_path / "cache", models_dir=tmp_path / "models")
    assert choose_engine(script, "ja", registry=empty) == "passthrough"
    assert choose_engine(script, "en", subtitle_languages=["eng"], registry=empty) == "subtitles"
    assert choose_engine(script, "en", subtitle_languages=[None, "fr"], registry=empty) == "whisper-translate"
    with pytest.raises(ModelNotFoundError, match="opus-mt-ja-fr"):
        choose_engine(script, "fr", registry=empty)
    folder = tmp_path / "models" / "opus-mt-ja-fr"
    folder.mkdir(parents=True)
    (folder / "model.bin").write_bytes(b"")
    assert choose_engine(script, "fr", registry=empty) == "ctranslate2"


def test_ctranslate2_without_a_model_says_where_to_put_one(tmp_path: Path) -> None:
    reg = ModelRegistry(cache_dir=tmp_path, models_dir=tmp_path / "models")
    with pytest.raises(ModelNotFoundError, match="DUBBING_MODELS_DIR"):
        CTranslate2Translator(registry=reg).translate(_ja_script(), "de")


@pytest.fixture(scope="module")
def tiny_marian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random MarianMT with a real sentencepiece tokenizer, converted to CTranslate2 here."""
    spm = pytest.importorskip("sentencepiece")
    transformers = pytest.importorskip("transformers")
    converters = pytest.importorskip("ctranslate2.converters")
    import torch

    root = tmp_path_factory.mktemp("marian")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join([g["text_ja"] for g in ground_truth(JA)["lines"]]
                                + [g["text_en"] for g in ground_truth(JA)["lines"]]) * 10, encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(root / "sp"), vocab_size=80,
                                   character_coverage=1.0, hard_vocab_limit=False, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(root / "sp.model"))
    vocab = {"</s>": 0, "<unk>": 1}
    for i in range(sp.get_piece_size()):
        vocab.setdefault(sp.id_to_piece(i), len(vocab))
    vocab["<pad>"] = len(vocab)  # Marian keeps <pad> last; the converter drops it
    (root / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    hf = root / "hf"
    with warnings.catch_warnings():  # "Recommended: pip install sacremoses" (not needed here)
        warnings.simplefilter("ignore")
        tokenizer = transformers.MarianTokenizer(vocab=str(root / "vocab.json"),
                                                 source_spm=str(root / "sp.model"),
                                                 target_spm=str(root / "sp.model"))
    config = transformers.MarianConfig(
        vocab_size=len(vocab), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=128,
        pad_token_id=vocab["<pad>"], eos_token_id=0, decoder_start_token_id=vocab["<pad>"])
    torch.manual_seed(0)
    transformers.MarianMTModel(config).save_pretrained(hf)
    tokenizer.save_pretrained(hf)
    out = root / "opus-mt-ja-en"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converters.TransformersConverter(str(hf), copy_files=["source.spm", "target.spm"]).convert(str(out))
    return out


def test_ctranslate2_engine_runs_a_converted_marian_model(tiny_marian: Path, tmp_path: Path) -> None:
    assert {"model.bin", "source.spm", "target.spm"} <= {p.name for p in tiny_marian.iterdir()}
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(tiny_marian, models / "opus-mt-ja-en")
    reg = ModelRegistry(cache_dir=tmp_path / "cache", models_dir=models)
    engine = get_translator("ctranslate2", registry=reg, max_decoding_length=12, beam_size=2)
    script = _ja_script()
    out = engine.translate(script, "en")
    assert out.engine == "ctranslate2" and out.meta["model"] == "opus-mt-ja-en"
    assert len(out.lines) == 4 and all(isinstance(ln.text, str) and ln.text for ln in out.lines)
    assert [ln.source_text for ln in out.lines] == [ln.text for ln in script.lines]
    again = engine.translate(script, "en")  # model loaded once, output deterministic
    assert [ln.text for ln in again.lines] == [ln.text for ln in out.lines]
    assert len(engine._loaded) == 1
    by_path = CTranslate2Translator(tiny_marian, registry=reg, max_decoding_length=12).translate(script, "en")
    assert len(by_path.lines) == 4
    nbest = get_translator("ctranslate2", registry=reg, max_decoding_length=12, beam_size=2, candidates=4)
    several = nbest.translate(script, "en")  # the n-best for the fit choice: the single best comes first
    # n-best decodes with a beam of 4: its first reading is what a beam of 4 gives alone (a beam of 2 may
    # stop at another reading: on some CPUs it did, with this random model)
    wide = get_translator("ctranslate2", registry=reg, max_decoding_length=12, beam_size=4).translate(script, "en")
    assert [ln.text for ln in several.lines] == [ln.text for ln in wide.lines]
    for ln in several.lines:
        texts = [a["text"] for a in ln.alternatives]
        assert 2 <= len(texts) <= 4 and len(set(texts)) == len(texts) and texts[0] == ln.text
        assert [a["logprob"] for a in ln.alternatives] == sorted((a["logprob"] for a in ln.alternatives), reverse=True)


def test_glossary_records_missing_terms() -> None:
    tr = Translation(source_language="ja", target_language="en", engine="test", lines=[
        TranslatedLine(0, 1.0, 2.0, "Aiko", "ケンジ、メロンパンを買った", "Kenji, I bought melon bread."),
        TranslatedLine(1, 3.0, 4.0, "Kenji", "ありがとう、アイコ", "Thanks, Aiko."),
        TranslatedLine(2, 5.0, 6.0, "Kenji", "パン屋に行こう", "Let's go to the shop."),
    ])
    glossary = {"ケンジ": "Kenji", "メロンパン": "melonpan", "アイコ": "aiko", "パン屋": "bakery"}
    out = apply_glossary(tr, glossary)
    assert [(ln.glossary_ok, ln.glossary_missing) for ln in out.lines] == [
        (False, ["melonpan"]), (True, []), (False, ["bakery"])]
    assert out.meta["glossary"] == {"terms": 4, "lines_missing_terms": 2}
    assert [ln.text for ln in out.lines] == [ln.text for ln in tr.lines]  # text untouched
    assert tr.lines[0].glossary_ok is True  # the input is not mutated
