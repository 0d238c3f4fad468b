"""Random-weight XTTS v2 and Wav2Lip checkpoints in the released layouts, for trying high mode.

The real weights are large (XTTS v2 1.8 GB, CPML licence; Wav2Lip 436 MB) and
need a network; these random ones have the same graphs, so the engines' real
loading, conditioning and inference code runs anywhere. The voice they make is
noise and the lips a grey blur: structure, timing fit and QA are real. Used by
the high-mode tests (tiny sizes), `bench/highmode.py` (released sizes) and::

    python -m dubbing_assets.core.random_models DIR      # = scripts/dev.py tiny-models DIR
    DUBBING_MODELS_DIR=DIR dubbing submit clip.mkv --mode high

XTTS needs the ``xtts`` extra (coqui-tts); Wav2Lip needs only torch.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
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


def build_random_wav2lip(folder: Path, *, width: float = 0.125, seed: int = 0) -> Path:
    """``folder/wav2lip_gan.pth`` with random weights, saved as the released DataParallel checkpoint."""
    import torch

    from dubbing_assets.core.lipsync import build_wav2lip

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = build_wav2lip(width=width)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    path = folder / "wav2lip_gan.pth"
    torch.save({"state_dict": state, "global_step": 0}, path)
    return path


def write_tiny_models(root: Path) -> dict[str, Path]:
    """Tiny random XTTS v2 and Wav2Lip under `root`, laid out as `DUBBING_MODELS_DIR` expects."""
    from dubbing_assets.core.engines.xtts import XTTS_MODEL
    from dubbing_assets.core.lipsync import WAV2LIP_MODEL

    root = Path(root)
    return {XTTS_MODEL: build_random_xtts(root / XTTS_MODEL),
            WAV2LIP_MODEL: build_random_wav2lip(root / WAV2LIP_MODEL).parent}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write tiny random-weight XTTS v2 and Wav2Lip checkpoints "
                                                 "laid out as DUBBING_MODELS_DIR expects.")
    parser.add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    try:
        written = write_tiny_models(args.dir)
    except ImportError as exc:
        print(f"error: {exc}. XTTS needs the xtts extra: run `python3.11 scripts/dev.py setup --high` "
              f"and use .venv-high/bin/python.", file=sys.stderr)
        return 1
    for name, folder in written.items():
        print(f"{name}: {folder}")
    print(f"try high mode (with the daemon running from .venv-high): "
          f"DUBBING_MODELS_DIR={args.dir} .venv-high/bin/dubbing submit CLIP --mode high")
    return 0


if __name__ == "__main__":
    sys.exit(main())
