"""TIMIT reader: the LDC tree (upper or lower case, with or without ``*.WAV.wav`` copies).

Splits follow Kaldi's egs/timit/s5 recipe: ``train`` is every speaker under TRAIN; ``dev``
and ``test`` (core test) are the published speaker lists, both drawn from TEST; ``test_full``
is every speaker under TEST. SA sentences are dropped by default, as Kaldi, SpeechBrain
and Graves et al. (2013) do.
"""

from __future__ import annotations

import re
from pathlib import Path

from recog.data.audio import audio_info
from recog.data.timit_speakers import CORE_TEST_SPEAKERS, DEV_SPEAKERS
from recog.data.utterance import Corpus, DataError, Rejections, Utterance
from recog.tokens import TIMIT_61

_DIALECT = re.compile(r"dr[1-8]", re.IGNORECASE)


def _child(folder: Path, name: str) -> Path | None:
    """The entry of ``folder`` named ``name`` in any letter case."""
    for p in folder.iterdir():
        if p.name.lower() == name.lower():
            return p
    return None


def find_timit_root(root: str | Path) -> Path:
    """Find the folder holding TRAIN/ and/or TEST/: root itself, TIMIT/ or data/ below it."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "TIMIT root is not a folder")
    candidates = [root]
    for name in ("timit", "data"):
        sub = _child(root, name)
        if sub and sub.is_dir():
            candidates.append(sub)
            deeper = _child(sub, "timit")
            if deeper and deeper.is_dir():
                candidates.append(deeper)
    for c in candidates:
        if any(_child(c, s) for s in ("train", "test")):
            return c
    raise DataError(root, "no TIMIT tree found (looked for TRAIN/ or TEST/ in it, in TIMIT/ "
                    "and in data/)")


def read_ascii_lines(path: Path) -> list[str]:
    """The lines of a TIMIT text file (.PHN, .WRD, .TXT), which is plain ASCII; a byte
    outside ASCII is an error naming its line, not a silently replaced character."""
    if not path.is_file():
        raise DataError(path, "file is missing")
    data = path.read_bytes()
    try:
        return data.decode("ascii").splitlines()
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(path, f"not ASCII text: byte 0x{data[e.start]:02x}", line) from None


def parse_segments(path: Path, num_samples: int, known: frozenset[str] | None = None,
                   contiguous: bool = False) -> list[tuple[int, int, str]]:
    """Parse a .PHN or .WRD file: 'start end label' per line, in samples. With
    ``contiguous`` (.PHN) a segment may not start before the previous one ends."""
    segments: list[tuple[int, int, str]] = []
    for n, line in enumerate(read_ascii_lines(path), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
            raise DataError(path, f"expected 'start end label', got {line.strip()!r}", n)
        start, end, label = int(parts[0]), int(parts[1]), parts[2]
        if end < start:
            raise DataError(path, f"segment ends ({end}) before it starts ({start})", n)
        if end > num_samples:
            raise DataError(path, f"segment ends at sample {end}, the audio has {num_samples}", n)
        if contiguous and segments and start < segments[-1][1]:
            raise DataError(path, f"segment starts at {start}, before the previous one ends "
                            f"({segments[-1][1]}): overlapping segments", n)
        if known is not None and label not in known:
            raise DataError(path, f"unknown phone {label!r}", n)
        segments.append((start, end, label))
    if not segments:
        raise DataError(path, "no segments")
    return segments


def read_transcript(path: Path) -> str:
    """The sentence of a .TXT file ('start end sentence' on its first line)."""
    lines = [line for line in read_ascii_lines(path) if line.strip()]
    parts = lines[0].strip().split(maxsplit=2) if lines else []
    if len(parts) < 3 or not parts[0].isdigit() or not parts[1].isdigit():
        raise DataError(path, "expected 'start end sentence' (an empty transcript?)", 1)
    return parts[2]


def _audio_path(phn: Path) -> Path:
    """The NIST original beside a .PHN; the redistribution's RIFF copy if only that exists."""
    wav = phn.with_suffix(".WAV" if phn.suffix.isupper() else ".wav")
    if wav.is_file():
        return wav
    riff = phn.with_suffix(wav.suffix + ".wav")
    return riff if riff.is_file() else wav


def read_utterance(phn: Path, speaker: str, dialect: str) -> Utterance:
    """Read one utterance from its .PHN and the .WAV, .WRD, .TXT beside it."""
    wav = _audio_path(phn)
    info = audio_info(wav)
    if info.rate != 16000:
        raise DataError(wav, f"TIMIT audio is 16 kHz, this file is {info.rate} Hz")
    if info.channels != 1:
        raise DataError(wav, f"TIMIT audio is mono, this file has {info.channels} channels")
    if info.subtype != "PCM_16":
        raise DataError(wav, f"TIMIT audio is 16-bit PCM, this file is {info.subtype}")
    num_samples = info.frames
    phones = parse_segments(phn, num_samples, frozenset(TIMIT_61), contiguous=True)
    upper = phn.suffix.isupper()
    parse_segments(phn.with_suffix(".WRD" if upper else ".wrd"), num_samples)
    text = read_transcript(phn.with_suffix(".TXT" if upper else ".txt"))
    return Utterance(
        id=f"{speaker}_{phn.stem.lower()}",
        speaker=speaker,
        source=str(wav),
        tokens=tuple(label for _, _, label in phones),
        text=text,
        extra={"dialect": dialect, "num_samples": num_samples},
    )


def _unlabelled_audio(spk_dir: Path, drop_sa: bool) -> list[DataError]:
    """One rejection per audio file of a speaker folder with no .PHN beside it (a NIST
    original and its ``.WAV.wav`` copy count once, as the original)."""
    names = {p.name.lower(): p for p in spk_dir.iterdir()}
    out = []
    for name, path in sorted(names.items()):
        stem = name.removesuffix(".wav")
        if stem == name or (stem.endswith(".wav") and stem in names):  # not audio, a copy
            continue
        stem = stem.removesuffix(".wav")
        if f"{stem}.phn" not in names and not (drop_sa and stem.startswith("sa")):
            out.append(DataError(path, f"no .PHN for {path.name}"))
    return out


def read_timit(root: str | Path, *, drop_sa: bool = True, skip_bad: bool = False) -> Corpus:
    """Read every utterance of a TIMIT tree and sort them into the four standard splits.
    Audio without a .PHN is listed among the rejections (not an error by itself)."""
    tree = find_timit_root(root)
    rejections = Rejections(skip_bad)
    by_part: dict[str, list[Utterance]] = {"train": [], "test": []}
    unlabelled: dict[str, list[tuple[str, DataError]]] = {"train": [], "test": []}
    for part in by_part:
        part_dir = _child(tree, part)
        if part_dir is None:
            continue
        for dr in sorted(p for p in part_dir.iterdir() if _DIALECT.fullmatch(p.name)):
            for spk_dir in sorted(p for p in dr.iterdir() if p.is_dir()):
                unlabelled[part] += [(spk_dir.name.lower(), e)
                                     for e in _unlabelled_audio(spk_dir, drop_sa)]
                for phn in sorted(spk_dir.glob("*")):
                    if phn.suffix.lower() != ".phn":
                        continue
                    if drop_sa and phn.stem.lower().startswith("sa"):
                        continue
                    try:
                        by_part[part].append(
                            read_utterance(phn, spk_dir.name.lower(), dr.name.lower())
                        )
                    except DataError as e:
                        rejections.add(e)
    dev, core = set(DEV_SPEAKERS), set(CORE_TEST_SPEAKERS)
    splits = {
        "train": by_part["train"],
        "dev": [u for u in by_part["test"] if u.speaker in dev],
        "test": [u for u in by_part["test"] if u.speaker in core],
        "test_full": by_part["test"],
    }
    speakers = {"train": None, "dev": dev, "test": core, "test_full": None}
    no_phn = [e for errors in unlabelled.values() for _, e in errors]
    for name, utts in splits.items():
        if utts:
            continue
        part = "train" if name == "train" else "test"
        missed = [e for spk, e in unlabelled[part] if speakers[name] is None or spk in
                  speakers[name]]
        why = (f"{len(missed)} audio file(s) of its speakers had no .PHN" if missed else
               "no utterance of its speakers was found in this tree")
        rejections.add(DataError(tree, f"split {name!r} is empty: {why}"))
    return Corpus(tree, splits, no_phn + rejections.items)
