"""Random-weight XTTS v2 checkpoints in the released layout (config.json + model.pth + vocab.json).

Used by the high-mode tests (tiny sizes) and `bench/highmode.py` (the
released sizes), so the engine's real loading, conditioning and inference
code runs without the 1.8 GB download. Needs the ``xtts`` extra.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

#: Released XTTS v2 values that differ from XttsConfig's defaults (its config.json on the model hub).
RELEASED_ARGS: dict[str, Any] = {
    "gpt_num_audio_tokens": 1026,
    "gpt_start_audio_token": 1024,
    "gpt_stop_audio_token": 1025,
    "gpt_use_perceiver_resampler": True,
    "gpt_max_audio_tokens": 605,
    "gpt_max_text_tokens": 402,
    "gpt_max_prompt_tokens": 70,
    "gpt_code_stride_len": 1024,
}
#: A tiny model with the same graph: 2 GPT layers of 64 channels, at most ~1.5 s of audio per line.
TINY_ARGS: dict[str, Any] = {
    **RELEASED_ARGS,
    "gpt_layers": 2,
    "gpt_n_model_channels": 64,
    "gpt_n_heads": 4,
    "decoder_input_dim": 64,
    "gpt_max_audio_tokens": 36,
}
_SPECIAL = ["[STOP]", "[UNK]", "[SPACE]", "[START]", "[en]", "[ja]"]


def write_vocab(path: Path) -> int:
    """A character-level BPE vocab.json in the tokenizer's format; returns the number of tokens."""
    from tokenizers import AddedToken, Tokenizer
    from tokenizers.models import BPE

    chars = list(string.ascii_lowercase + string.digits + ".,!?'\"-:;()")
    vocab = {tok: i for i, tok in enumerate(_SPECIAL + chars)}
    tok = Tokenizer(BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tok.add_special_tokens([AddedToken(t, normalized=False) for t in _SPECIAL])
    tok.save(str(path))
    return len(vocab)


def build_random_xtts(folder: Path, *, tiny: bool = True, seed: int = 0, **overrides: Any) -> Path:
    """Write a random-weight XTTS v2 checkpoint folder; `tiny=False` gives the released sizes."""
    import torch
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n_tokens = write_vocab(folder / "vocab.json")
    config = XttsConfig()
    args = {**(TINY_ARGS if tiny else RELEASED_ARGS), **overrides}
    for key, value in args.items():
        setattr(config.model_args, key, value)
    config.model_args.gpt_number_text_tokens = n_tokens
    config.model_args.gpt_start_text_token = _SPECIAL.index("[START]")
    config.model_args.gpt_stop_text_token = _SPECIAL.index("[STOP]")
    config.model_args.tokenizer_file = ""
    torch.manual_seed(seed)
    model = Xtts(config)
    (folder / "config.json").write_text(json.dumps(config.to_dict(), indent=1, default=str), encoding="utf-8")
    torch.save({"model": model.state_dict(), "config": config.to_dict()}, folder / "model.pth")
    return folder


def parameter_count(folder: Path) -> int:
    import torch

    state = torch.load(folder / "model.pth", map_location="cpu", weights_only=True)["model"]
    return sum(int(v.numel()) for v in state.values())
