"""A small ctypes binding to eSpeak NG (the copy shipped by ``espeakng-loader``).

Only what the synthetic corpora need: synchronous synthesis into memory with phoneme and
word events, and text-to-phoneme conversion. The library is initialised once per process
(``espeak_Initialize`` with ``AUDIO_OUTPUT_SYNCHRONOUS`` and the phoneme-event option);
nothing from the system or the network is used.

Event positions: each ``espeak_EVENT`` carries ``audio_position`` (milliseconds) and
``sample`` (the sample index in the output stream). Checked empirically against the audio:
``sample`` is the exact position of the phoneme start (a fricative's noise begins there,
a vowel's voicing begins there), while ``audio_position * rate / 1000`` is the same point
rounded to a millisecond. We therefore use ``sample``.
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass

import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 1
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_RATE = 1
_PITCH = 3
_RANGE = 4

_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7


class _EventId(ctypes.Union):
    _fields_ = [
        ("number", ctypes.c_int),
        ("name", ctypes.c_char_p),
        ("string", ctypes.c_char * 8),
    ]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


class EspeakError(RuntimeError):
    """eSpeak NG could not be loaded, did not accept a voice, or failed to synthesise."""


@dataclass(frozen=True)
class PhonemeEvent:
    """One phoneme as eSpeak reports it: mnemonic (stress marks kept), start sample, word."""

    mnemonic: str
    sample: int
    text_position: int


@dataclass(frozen=True)
class WordEvent:
    """One word: 1-based character position and length in the text, and its start sample."""

    text_position: int
    length: int
    sample: int


@dataclass(frozen=True)
class Synthesis:
    """The int16 samples of one utterance at ``sample_rate`` with its phoneme and word events."""

    samples: np.ndarray
    sample_rate: int
    phonemes: tuple[PhonemeEvent, ...]
    words: tuple[WordEvent, ...]


class _Engine:
    """The loaded library, its sample rate, and the buffers the callback fills."""

    def __init__(self) -> None:
        import espeakng_loader

        try:
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
        except OSError as e:
            raise EspeakError(f"cannot load libespeak-ng: {e}") from None
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_TextToPhonemes.argtypes = [
            ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int,
        ]  # fmt: skip
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p

        data_path = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, _INITIALIZE_PHONEME_EVENTS
        )
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed (returned {rate})")
        self.lib = lib
        self.sample_rate = rate
        self._chunks: list[bytes] = []
        self._events: list[tuple[int, int, int, int, bytes]] = []
        self._callback = _SynthCallback(self._on_audio)  # kept alive with the engine
        lib.espeak_SetSynthCallback(self._callback)
        self.lock = threading.Lock()

    def _on_audio(self, wav, n_samples: int, events) -> int:  # ctypes pointers in, 0 = go on
        if wav and n_samples > 0:
            self._chunks.append(ctypes.string_at(wav, 2 * n_samples))
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            e = events[i]
            if e.type in (_EVENT_PHONEME, _EVENT_WORD):
                name = bytes(e.id.string) if e.type == _EVENT_PHONEME else b""
                self._events.append((e.type, e.text_position, e.length, e.sample, name))
            i += 1
        return 0

    def set_voice(self, voice: str) -> None:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise EspeakError(f"eSpeak NG has no voice {voice!r}")

    def set_parameter(self, which: int, value: int) -> None:
        if self.lib.espeak_SetParameter(which, value, 0) != 0:
            raise EspeakError(f"eSpeak NG refused parameter {which} = {value}")

    def synthesize(self, text: str) -> Synthesis:
        self._chunks, self._events = [], []
        data = text.encode("utf-8")
        status = self.lib.espeak_Synth(
            data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
        )
        if status != 0:
            raise EspeakError(f"espeak_Synth failed (status {status}) on {text!r}")
        samples = np.frombuffer(b"".join(self._chunks), dtype=np.int16).copy()
        phonemes = tuple(
            PhonemeEvent(name.decode("ascii"), sample, pos)
            for kind, pos, _, sample, name in self._events
            if kind == _EVENT_PHONEME
        )
        words = tuple(
            WordEvent(pos, length, sample)
            for kind, pos, length, sample, _ in self._events
            if kind == _EVENT_WORD
        )
        return Synthesis(samples, self.sample_rate, phonemes, words)

    def text_to_phonemes(self, text: str, ipa: bool) -> list[str]:
        buffer = ctypes.create_string_buffer(text.encode("utf-8"))
        pointer = ctypes.c_void_p(ctypes.addressof(buffer))
        mode = (ord(" ") << 8) | (0x02 if ipa else 0x00)
        clauses = []
        while pointer.value:
            result = self.lib.espeak_TextToPhonemes(ctypes.byref(pointer), _CHARS_UTF8, mode)
            if result is None:
                break
            clauses.append(result.decode("utf-8"))
        return " ".join(clauses).split()


_engine: _Engine | None = None
_engine_pid: int | None = None


def _get_engine() -> _Engine:
    """The process's eSpeak engine, initialised on first use (once per process)."""
    global _engine, _engine_pid
    if _engine is None or _engine_pid != os.getpid():
        _engine = _Engine()
        _engine_pid = os.getpid()
    return _engine


def sample_rate() -> int:
    """eSpeak NG's output sample rate (22050 Hz for the shipped voices)."""
    return _get_engine().sample_rate


def synthesize(
    text: str, voice: str, rate_wpm: int = 175, pitch: int = 50, pitch_range: int = 50
) -> Synthesis:
    """Speak ``text`` with ``voice`` (e.g. ``"en-us+m3"``), returning samples and events.

    ``rate_wpm`` is eSpeak's speaking rate (80..450 words per minute), ``pitch`` and
    ``pitch_range`` its base pitch and intonation range (0..100).
    """
    engine = _get_engine()
    with engine.lock:
        engine.set_voice(voice)
        engine.set_parameter(_RATE, rate_wpm)
        engine.set_parameter(_PITCH, pitch)
        engine.set_parameter(_RANGE, pitch_range)
        return engine.synthesize(text)


def text_to_phonemes(text: str, voice: str, ipa: bool = False) -> list[str]:
    """eSpeak's phonemes for ``text`` without synthesis, as mnemonics or (``ipa``) IPA strings.

    Used to derive and check the mnemonic -> TIMIT table: the same text in both modes gives
    the IPA value of each mnemonic in each accent.
    """
    engine = _get_engine()
    with engine.lock:
        engine.set_voice(voice)
        return engine.text_to_phonemes(text, ipa)
