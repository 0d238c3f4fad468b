"""Settings from DUBBING_* variables (core/settings.py): defaults, parsing, validation and the folders.

Every resource and CLI command reads its configuration through `load_settings`, at run time, so a wrong
default or a silently accepted bad value reaches every stage. These tests pin the parsing rules (blank
means unset, numbers checked with a ConfigError, clamped counters, case rules), that the documented
defaults in `VARIABLES` (the README table is generated from it) are the ones actually used, where the
folders land, and what `ensure()` and `private_tmp_dir()` create. test_qa.py covers the overflow
tolerance's use in QA; nothing else tests this module directly.
"""

from __future__ import annotations

import dataclasses
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from dubbing_assets.core.settings import VARIABLES, Settings, load_settings, private_tmp_dir
from dubbing_assets.errors import ConfigError


class _Recording(Mapping[str, str]):
    """An environment that remembers which names were asked for (`get` goes through `__getitem__`)."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values, self.asked = values, set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        return self.values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def _load(tmp_path: Path, **env: str) -> Settings:
    return load_settings({"DUBBING_HOME": str(tmp_path / "home"), **env})


# --- defaults ------------------------------------------------------------------------------------------


def test_every_folder_defaults_beneath_dubbing_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    s = _load(tmp_path)
    assert s.home == home
    assert (s.inbox, s.output, s.storage, s.keyring, s.log_dir, s.cache) == (
        home / "inbox", home / "library", home / "storage", home / "keys" / "keyring.json", home / "logs",
        home / "cache")
    assert (s.review, s.requests, s.quarantine, s.episodes, s.state, s.tmp) == (
        home / "review", home / "requests", home / "quarantine", home / "episodes", home / "state", home / "tmp")
    assert s.models_dir is None


def test_documented_folder_defaults_are_the_real_ones(tmp_path: Path) -> None:
    """VARIABLES says `$DUBBING_HOME/<path>`; the loaded folder must be exactly that."""
    s = _load(tmp_path)
    attrs = {"DUBBING_INBOX": "inbox", "DUBBING_OUTPUT": "output", "DUBBING_STORAGE": "storage",
             "DUBBING_KEYRING": "keyring", "DUBBING_LOG_DIR": "log_dir", "DUBBING_CACHE": "cache"}
    for name, attr in attrs.items():
        documented = VARIABLES[name][0]
        assert documented.startswith("$DUBBING_HOME/"), name
        assert getattr(s, attr) == s.home / documented.removeprefix("$DUBBING_HOME/"), name


def test_documented_value_defaults_are_the_real_ones(tmp_path: Path) -> None:
    s = _load(tmp_path)
    numbers = {"DUBBING_LOUDNESS_LUFS": "loudness_lufs", "DUBBING_QA_OVERFLOW_TOLERANCE_MS": "qa_overflow_tolerance_ms",
               "DUBBING_TRANSLATION_CANDIDATES": "translation_candidates",
               "DUBBING_SENSOR_MAX_REQUESTS": "sensor_max_requests", "DUBBING_INBOX_STABLE_TICKS": "inbox_stable_ticks",
               "DUBBING_INBOX_SETTLE_S": "inbox_settle_s", "DUBBING_CLONE_MIN_SIMILARITY": "clone_min_similarity"}
    for name, attr in numbers.items():
        assert float(VARIABLES[name][0]) == getattr(s, attr), name
    words = {"DUBBING_TARGET_LANG": "target_lang", "DUBBING_SCRIPT_SOURCE": "script_source",
             "DUBBING_TRANSLATION_ENGINE": "translation_engine", "DUBBING_ASR_MODEL": "asr_model",
             "DUBBING_DEVICE": "device", "DUBBING_CONTAINER": "container"}
    for name, attr in words.items():
        assert VARIABLES[name][0] == getattr(s, attr), name
    assert s.operators == (VARIABLES["DUBBING_OPERATORS"][0],) == ("root",)
    assert VARIABLES["DUBBING_METADATA_DIALOGUE"][0] == "off" and s.metadata_dialogue is False


def test_settings_class_defaults_agree_with_load_settings(tmp_path: Path) -> None:
    """Code that builds `Settings(...)` directly (tests, tools) gets the same behaviour as the environment."""
    loaded = _load(tmp_path)
    folders = {f: getattr(loaded, f) for f in ("home", "inbox", "output", "storage", "keyring", "log_dir", "cache")}
    direct = Settings(**folders)
    for f in dataclasses.fields(Settings):
        if f.name not in folders and f.name not in ("owner", "extra"):
            assert getattr(direct, f.name) == getattr(loaded, f.name), f.name


def test_every_variable_load_settings_reads_is_documented(tmp_path: Path) -> None:
    env = _Recording({"DUBBING_HOME": str(tmp_path)})
    load_settings(env)
    read = {name for name in env.asked if name.startswith("DUBBING_")}
    assert len(read) >= 20  # the recording works: it saw the reads
    assert read <= set(VARIABLES), sorted(read - set(VARIABLES))


def test_home_defaults_to_dot_dubbing_in_the_users_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_settings({}).home == tmp_path / ".dubbing"
    assert load_settings({"DUBBING_HOME": "   "}).home == tmp_path / ".dubbing"  # blank is unset


def test_paths_expand_a_leading_tilde(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    s = load_settings({"DUBBING_HOME": "~/dub", "DUBBING_INBOX": "~/drop", "DUBBING_MODELS_DIR": "~/models"})
    assert (s.home, s.inbox, s.models_dir) == (tmp_path / "dub", tmp_path / "drop", tmp_path / "models")
    assert s.output == tmp_path / "dub" / "library"


def test_settings_are_read_when_asked_not_at_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DUBBING_HOME", str(tmp_path / "a"))
    monkeypatch.setenv("DUBBING_CONTAINER", "mp4")
    first = load_settings()
    monkeypatch.setenv("DUBBING_HOME", str(tmp_path / "b"))
    monkeypatch.delenv("DUBBING_CONTAINER")
    second = load_settings()
    assert (first.home, first.container) == (tmp_path / "a", "mp4")
    assert (second.home, second.container, second.inbox) == (tmp_path / "b", "mkv", tmp_path / "b" / "inbox")


def test_settings_are_frozen(tmp_path: Path) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        _load(tmp_path).home = tmp_path  # type: ignore[misc]


# --- overrides and parsing -----------------------------------------------------------------------------


def test_folder_overrides_leave_the_home_managed_folders_under_home(tmp_path: Path) -> None:
    s = _load(tmp_path, DUBBING_INBOX=str(tmp_path / "nas" / "drop"), DUBBING_OUTPUT=f"  {tmp_path / 'out'}  ",
              DUBBING_KEYRING=str(tmp_path / "secret" / "ring.json"), DUBBING_MODELS_DIR=str(tmp_path / "m"))
    assert (s.inbox, s.output, s.keyring, s.models_dir) == (
        tmp_path / "nas" / "drop", tmp_path / "out", tmp_path / "secret" / "ring.json", tmp_path / "m")
    assert s.storage == tmp_path / "home" / "storage"
    assert s.requests == tmp_path / "home" / "requests" and s.review == tmp_path / "home" / "review"


def test_blank_values_mean_unset(tmp_path: Path) -> None:
    blank = {name: " \t" for name in VARIABLES if name not in ("DUBBING_HOME", "DAGSTER_HOME")}
    assert _load(tmp_path, **blank) == _load(tmp_path)


def test_numbers_are_parsed_with_surrounding_spaces(tmp_path: Path) -> None:
    s = _load(tmp_path, DUBBING_LOUDNESS_LUFS=" -16.5 ", DUBBING_SENSOR_MAX_REQUESTS="7 ",
              DUBBING_INBOX_STABLE_TICKS="3", DUBBING_INBOX_SETTLE_S="0.25", DUBBING_CLONE_MIN_SIMILARITY="-1",
              DUBBING_QA_OVERFLOW_TOLERANCE_MS="0", DUBBING_TRANSLATION_CANDIDATES="1")
    assert (s.loudness_lufs, s.sensor_max_requests, s.inbox_stable_ticks, s.inbox_settle_s) == (-16.5, 7, 3, 0.25)
    assert (s.clone_min_similarity, s.qa_overflow_tolerance_ms, s.translation_candidates) == (-1.0, 0.0, 1)


@pytest.mark.parametrize("name,value", [
    ("DUBBING_LOUDNESS_LUFS", "loud"),
    ("DUBBING_SENSOR_MAX_REQUESTS", "2.5"),
    ("DUBBING_SENSOR_MAX_REQUESTS", "ten"),
    ("DUBBING_INBOX_STABLE_TICKS", "1e3"),
    ("DUBBING_INBOX_SETTLE_S", "10s"),
    ("DUBBING_CLONE_MIN_SIMILARITY", "70%"),
    ("DUBBING_QA_OVERFLOW_TOLERANCE_MS", "20ms"),
    ("DUBBING_TRANSLATION_CANDIDATES", "5.0"),
])
def test_a_value_that_is_not_a_number_is_a_config_error(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match="is not a number") as info:
        _load(tmp_path, **{name: value})
    assert repr(value) in str(info.value) and "fix it or unset it" in str(info.value)


def test_a_non_number_error_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DUBBING_INBOX_SETTLE_S"):
        _load(tmp_path, DUBBING_INBOX_SETTLE_S="soon")


@pytest.mark.parametrize("value,ok", [
    ("0", True), ("9999.5", True), ("-0.1", False), ("-5", False), ("10000", False), ("nan", False), ("inf", False),
])
def test_overflow_tolerance_range(tmp_path: Path, value: str, ok: bool) -> None:
    if ok:
        assert _load(tmp_path, DUBBING_QA_OVERFLOW_TOLERANCE_MS=value).qa_overflow_tolerance_ms == float(value)
    else:
        with pytest.raises(ConfigError, match="DUBBING_QA_OVERFLOW_TOLERANCE_MS=.* is not valid"):
            _load(tmp_path, DUBBING_QA_OVERFLOW_TOLERANCE_MS=value)


@pytest.mark.parametrize("value,ok", [("1", True), ("32", True), ("0", False), ("33", False), ("-1", False)])
def test_translation_candidates_range(tmp_path: Path, value: str, ok: bool) -> None:
    if ok:
        assert _load(tmp_path, DUBBING_TRANSLATION_CANDIDATES=value).translation_candidates == int(value)
    else:
        with pytest.raises(ConfigError, match=f"DUBBING_TRANSLATION_CANDIDATES={value} is not valid"):
            _load(tmp_path, DUBBING_TRANSLATION_CANDIDATES=value)


@pytest.mark.parametrize("name", ["DUBBING_LOUDNESS_LUFS", "DUBBING_CLONE_MIN_SIMILARITY", "DUBBING_INBOX_SETTLE_S",
                                  "DUBBING_QA_OVERFLOW_TOLERANCE_MS"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_a_number_that_is_not_finite_is_a_config_error(tmp_path: Path, name: str, value: str) -> None:
    """float() takes these, and a NaN loudness target or similarity floor passes every comparison."""
    with pytest.raises(ConfigError, match=f"{name}='{value}' is not valid"):
        _load(tmp_path, **{name: value})


@pytest.mark.parametrize("name,value,ok", [
    ("DUBBING_LOUDNESS_LUFS", "-23", True), ("DUBBING_LOUDNESS_LUFS", "-16", True),
    ("DUBBING_LOUDNESS_LUFS", "23", False), ("DUBBING_LOUDNESS_LUFS", "-80", False),
    ("DUBBING_CLONE_MIN_SIMILARITY", "0", True), ("DUBBING_CLONE_MIN_SIMILARITY", "1", True),
    ("DUBBING_CLONE_MIN_SIMILARITY", "1.5", False), ("DUBBING_CLONE_MIN_SIMILARITY", "-1.5", False)])
def test_loudness_and_similarity_ranges(tmp_path: Path, name: str, value: str, ok: bool) -> None:
    if ok:
        _load(tmp_path, **{name: value})
    else:
        with pytest.raises(ConfigError, match=f"{name}='{value}' is not valid; use a number from"):
            _load(tmp_path, **{name: value})


def test_counters_and_waits_are_clamped_not_refused(tmp_path: Path) -> None:
    s = _load(tmp_path, DUBBING_SENSOR_MAX_REQUESTS="0", DUBBING_INBOX_STABLE_TICKS="-3", DUBBING_INBOX_SETTLE_S="-9")
    assert (s.sensor_max_requests, s.inbox_stable_ticks, s.inbox_settle_s) == (1, 1, 0.0)


@pytest.mark.parametrize("value,expected", [("mkv", "mkv"), ("MP4", "mp4"), (" Mkv ", "mkv")])
def test_container_is_case_insensitive(tmp_path: Path, value: str, expected: str) -> None:
    assert _load(tmp_path, DUBBING_CONTAINER=value).container == expected


@pytest.mark.parametrize("value", ["avi", "webm", "mkv4"])
def test_an_unknown_container_is_a_config_error(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=f"DUBBING_CONTAINER='{value}' is not valid; use 'mkv' or 'mp4'"):
        _load(tmp_path, DUBBING_CONTAINER=value)


def test_script_source_is_one_of_two(tmp_path: Path) -> None:
    assert _load(tmp_path, DUBBING_SCRIPT_SOURCE="asr").script_source == "asr"
    assert _load(tmp_path, DUBBING_SCRIPT_SOURCE="ASR").script_source == "asr"  # as DUBBING_CONTAINER is
    assert _load(tmp_path, DUBBING_SCRIPT_SOURCE=" subtitles-first ").script_source == "subtitles-first"
    with pytest.raises(ConfigError, match="DUBBING_SCRIPT_SOURCE='whisper' is not valid"):
        _load(tmp_path, DUBBING_SCRIPT_SOURCE="whisper")


def test_target_language_is_lowercased(tmp_path: Path) -> None:
    assert _load(tmp_path, DUBBING_TARGET_LANG="DE").target_lang == "de"


def test_free_form_engine_settings_are_passed_through(tmp_path: Path) -> None:
    s = _load(tmp_path, DUBBING_TRANSLATION_ENGINE="ctranslate2", DUBBING_ASR_MODEL=str(tmp_path / "whisper"),
              DUBBING_DEVICE="cuda")
    assert (s.translation_engine, s.asr_model, s.device) == ("ctranslate2", str(tmp_path / "whisper"), "cuda")


@pytest.mark.parametrize("value,expected", [
    ("ops", ("ops",)), (" ops , alice,, bob ,", ("ops", "alice", "bob")), (",", ()),
])
def test_operators_are_a_comma_separated_list(tmp_path: Path, value: str, expected: tuple[str, ...]) -> None:
    assert _load(tmp_path, DUBBING_OPERATORS=value).operators == expected


def test_owner_is_dubbing_owner_then_user_then_unknown(tmp_path: Path) -> None:
    assert _load(tmp_path, DUBBING_OWNER="studio", USER="alice").owner == "studio"
    assert _load(tmp_path, DUBBING_OWNER="  ", USER="alice").owner == "alice"
    assert _load(tmp_path, USER="").owner == "unknown"
    assert _load(tmp_path).owner == "unknown"  # only the given mapping counts, not the process's USER


@pytest.mark.parametrize("value,expected", [
    ("on", True), ("ON", True), ("1", True), ("true", True), ("Yes", True),
    ("off", False), ("0", False), ("no", False), ("false", False), ("", False),
])
def test_metadata_dialogue_switch(tmp_path: Path, value: str, expected: bool) -> None:
    assert _load(tmp_path, DUBBING_METADATA_DIALOGUE=value).metadata_dialogue is expected


# --- folders on disk -----------------------------------------------------------------------------------


def test_ensure_creates_every_folder_and_a_private_keys_folder(tmp_path: Path) -> None:
    s = _load(tmp_path, DUBBING_INBOX=str(tmp_path / "elsewhere" / "inbox"))
    assert not s.home.exists()
    assert s.ensure() is s
    for folder in (s.inbox, s.output, s.storage, s.log_dir, s.cache, s.review, s.requests, s.quarantine,
                   s.episodes, s.state, s.keyring.parent):
        assert folder.is_dir(), folder
    assert stat.S_IMODE(s.keyring.parent.stat().st_mode) & 0o077 == 0  # keys: owner only
    assert not s.keyring.exists()  # the folder, never a keyring (that is `dubbing instance init`)
    s.ensure()  # idempotent


def test_private_tmp_dir_is_the_settings_tmp_created_owner_only(tmp_path: Path) -> None:
    env = {"DUBBING_HOME": str(tmp_path / "home")}
    folder = private_tmp_dir(env)
    assert folder == load_settings(env).tmp == tmp_path / "home" / "tmp"
    assert folder.is_dir() and stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0
    assert private_tmp_dir(env) == folder  # again: it exists already


def test_private_tmp_dir_is_none_when_settings_or_the_folder_cannot_be_had(tmp_path: Path) -> None:
    assert private_tmp_dir({"DUBBING_HOME": str(tmp_path), "DUBBING_CONTAINER": "avi"}) is None
    assert private_tmp_dir({"DUBBING_HOME": str(tmp_path), "DUBBING_INBOX_SETTLE_S": "x"}) is None
    (tmp_path / "a-file").write_text("")
    assert private_tmp_dir({"DUBBING_HOME": str(tmp_path / "a-file")}) is None  # home is not a folder
    assert not (tmp_path / "tmp").exists()  # the refused settings created nothing
