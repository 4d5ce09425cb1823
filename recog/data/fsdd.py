"""The Free Spoken Digit Dataset (FSDD) in its own layout: ``DIR/recordings/*.wav`` or
``DIR/*.wav``, named ``{digit}_{speaker}_{index}.wav``; the text is the digit's English
word. Splits are by speaker only: the dev and test speakers are named, every other
speaker trains (the corpus: github.com/Jakobovski/free-spoken-digit-dataset, CC BY-SA 4.0).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from recog.data.audio import audio_info
from recog.data.utterance import Corpus, DataError, Rejections, Utterance

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
LETTERS = tuple(sorted(set("".join(DIGIT_WORDS))))  # token set ``chars``: the words' letters
TOKEN_SETS = {"chars": LETTERS, "words": DIGIT_WORDS}  # ``words``: each word one token
_NAME = re.compile(r"(\d)_([A-Za-z0-9]+)_(\d+)")


def recordings_dir(root: str | Path) -> Path:
    """``root/recordings`` when it exists (the repository's layout), else ``root``."""
    root = Path(root)
    return root / "recordings" if (root / "recordings").is_dir() else root


def read_fsdd(root: str | Path, dev_speakers: Sequence[str], test_speakers: Sequence[str],
              splits: tuple[str, str, str] = ("train", "dev", "test"),
              skip_bad: bool = False, extra: Path | None = None,
              tokens: str = "chars") -> Corpus:
    """Utterances of the train, dev and test splits (named by ``splits``), ids
    ``{speaker}_{digit}_{index}`` so that the speaker is the id's prefix (sclite's spu_id).
    A file whose name does not follow the pattern, or whose audio is unreadable, is an error
    naming it (with ``skip_bad``: rejected and listed); a named speaker with no recordings
    is an error naming the speaker. The recordings in ``extra`` (a folder in the same
    layout: synthetic speakers) all train; their speakers must not be among ``root``'s.
    ``tokens``: ``chars`` (the word's letters) or ``words`` (the word as one token)."""
    if tokens not in TOKEN_SETS:
        raise ValueError(f"corpus=fsdd: corpus.tokens is {' or '.join(TOKEN_SETS)}, "
                         f"not {tokens!r}")
    folder = recordings_dir(root)
    if not folder.is_dir():
        raise DataError(folder, "no such FSDD folder (corpus.root: the folder holding "
                        "recordings/ or the .wav files)")
    overlap = sorted(set(dev_speakers) & set(test_speakers))
    if overlap:
        raise DataError(folder, f"speaker(s) {overlap} named in both dev_speakers and "
                        "test_speakers")
    rejections = Rejections(skip_bad)
    by_split: dict[str, list[Utterance]] = {s: [] for s in splits}
    train, dev, test = splits
    files = sorted(folder.glob("*.wav"), key=lambda p: p.name)
    if not files:
        raise DataError(folder, "no .wav files (FSDD names them {digit}_{speaker}_{index}.wav)")
    added = sorted(extra.glob("*.wav"), key=lambda p: p.name) if extra else []
    seen: set[str] = set()  # root's speakers
    for path, synthetic in [(p, False) for p in files] + [(p, True) for p in added]:
        m = _NAME.fullmatch(path.stem)
        if m is None:
            rejections.add(DataError(path, "not an FSDD file name ({digit}_{speaker}_"
                                     "{index}.wav)"))
            continue
        try:
            audio_info(path)
        except DataError as e:
            rejections.add(e)
            continue
        digit, speaker, index = m.groups()
        if synthetic and speaker in seen:
            raise DataError(path, f"speaker {speaker!r} of the added recordings is also one "
                            f"of {folder}'s")
        if not synthetic:
            seen.add(speaker)
        word = DIGIT_WORDS[int(digit)]
        split = (train if synthetic else dev if speaker in dev_speakers
                 else test if speaker in test_speakers else train)
        by_split[split].append(Utterance(f"{speaker}_{digit}_{index}", speaker, str(path),
                                         tuple(word) if tokens == "chars" else (word,),
                                         word))
    for name, wanted in (("dev_speakers", dev_speakers), ("test_speakers", test_speakers)):
        missing = [s for s in wanted if s not in seen]
        if missing:
            raise DataError(folder, f"corpus.{name}: speaker(s) {missing} have no recordings "
                            f"here (speakers found: {sorted(seen)})")
    for split, utts in by_split.items():
        utts.sort(key=lambda u: (u.speaker, int(u.id.split("_")[-2]), int(u.id.split("_")[-1])))
        if not utts:
            raise DataError(folder, f"split {split!r} has no speakers: every speaker found "
                            f"({sorted(seen)}) is in another split")
    return Corpus(Path(root), by_split, rejections.items)
