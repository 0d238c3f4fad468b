"""TTS engines that live in their own modules (heavy or extra-only dependencies), and the router that
lets one cast mix engines.

Each engine here is declared in pyproject.toml's ``dubbing_assets.tts`` entry
points (core/plugins.py) and imported only when `tts.get_engine` asks for it
by name, so the base install never needs an extra's packages.
"""

from __future__ import annotations


class VoiceRouter:
    """One `TTSEngine` over several: each line goes to the engine its `Voice.engine` names.

    Lets a cast mix engines (a Kokoro voice for one character, a Piper voice for another,
    any voice of any engine pinned in the cast file). `engines` maps engine name -> built
    engine; `name` and `version` join theirs (the line cache keys on them), so a cast of
    one engine keys its lines exactly as that engine alone would.
    """

    def __init__(self, engines: dict[str, object]) -> None:
        if not engines:
            raise ValueError("VoiceRouter needs at least one engine")
        self.engines = dict(sorted(engines.items()))
        self.name = "+".join(self.engines)

    @property
    def version(self) -> str:
        if len(self.engines) == 1:
            return next(iter(self.engines.values())).version
        return " | ".join(f"{n}: {e.version}" for n, e in self.engines.items())

    def voices(self) -> list[str]:
        return [v for e in self.engines.values() for v in e.voices()]

    def identity_for(self, voice) -> tuple[str, str]:
        """The identity of the engine that speaks `voice` (not the router's): a Kokoro line keys the same
        whether the cast also has Piper voices or not."""
        from dubbing_assets.core.tts import identity_of

        return identity_of(self.engine_for(voice), voice)

    def engine_for(self, voice):
        """The engine that speaks `voice` (duration models ask it for its phonemes)."""
        from dubbing_assets.errors import ConfigError

        engine = self.engines.get(voice.engine)
        if engine is None:
            raise ConfigError(f"No TTS engine {voice.engine!r} is loaded for voice {voice.voice!r} "
                              f"(loaded: {', '.join(self.engines)}).")
        return engine

    def synthesize(self, text, voice, out_wav, *, rate: float = 1.0):
        return self.engine_for(voice).synthesize(text, voice, out_wav, rate=rate)


def route_voices(voices, build) -> VoiceRouter:
    """A `VoiceRouter` over the engines `voices` (Voice objects) use, built by `build(name)`.

    XTTS voices are left to the caller (high mode wraps them in verification); the
    engine of their low-mode fallback is included instead.
    """
    names: set[str] = set()
    for voice in voices:
        if voice.engine == "xtts":
            fallback = (voice.settings or {}).get("fallback_voice") or {}
            names.add(str(fallback.get("engine") or "piper"))
        else:
            names.add(voice.engine)
    return VoiceRouter({name: build(name) for name in sorted(names or {"piper"})})
