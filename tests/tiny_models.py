"""Tiny but real models, generated offline in seconds, for tests.

Nothing here touches the network: the Whisper model, its tokenizer, the wav2vec2
aligner and the nltk punkt tables are all built from code, seeded, so every run
produces the same files.  Heavy imports stay inside the functions so that merely
importing this module (e.g. from conftest) is cheap.

The tiny Whisper model is "scripted": its random weights are overridden so that
the decoder's output depends only on the decoding position (the learned position
embeddings are ~100x larger than everything else in the residual stream, and the
tied token embeddings are orthogonal directions for the few tokens it should
emit).  Pure random weights either emit EOT at once (no segments) or loop until
the temperature fallback starts *sampling*, which is not deterministic.  With
``language="zh"`` (or ``None``: language detection reads position 0, which points
at ``<|zh|>``) it always produces, whatever the audio::

    <|0.00|> 你 好 世 界 <|1.00|><|1.00|> Ġhello Ġworld <|2.00|> <|endoftext|>

i.e. two segments, "你好世界" over 0-1 s and " hello world" over 1-2 s, with
log-probabilities near 0 and a no-speech probability near 0, so none of
faster-whisper's default thresholds (no-speech, log-prob, compression ratio)
discards or re-samples them.  Beam search and the timestamp rules of
CTranslate2 run for real.
"""

from __future__ import annotations

import functools
import json
import math
import struct
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Text the scripted Whisper model emits, segment by segment (see module docstring).
WHISPER_SEGMENTS: tuple[tuple[float, float, tuple[str, ...]], ...] = (
    (0.0, 1.0, ("你", "好", "世", "界")),
    (1.0, 2.0, (" hello", " world")),
)
WHISPER_DETECTED_LANGUAGE = "zh"

# Characters the tiny aligner knows besides the specials.  Digits are left out on
# purpose so that tests can exercise words whisperx cannot time.
_ALIGN_CJK = "你好世界我们是的不了在有人这中大为上个国他到说时要就出会可也"
_ALIGN_LATIN = "abcdefghijklmnopqrstuvwxyz'"

_N_BASE_TOKENS = 50257  # byte-level BPE part of Whisper's multilingual vocabulary
_N_TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|>
_WHISPER_VOCAB_SIZE = 51865


@functools.cache
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (byte-level BPE alphabet)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def _byte_level(text: str) -> str:
    table = _bytes_to_unicode()
    return "".join(table[b] for b in text.encode("utf-8"))


def _whisper_languages() -> list[str]:
    """The 99 language codes of the 51,865-token vocabulary, in Whisper's token order."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    codes = [code for code in LANGUAGES if code != "yue"]  # yue only exists in large-v3
    assert len(codes) == 99, len(codes)
    return codes


def _whisper_special_tokens() -> list[str]:
    return [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *(f"<|{code}|>" for code in _whisper_languages()),
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nocaptions|>",
        "<|notimestamps|>",
        *(f"<|{i * 0.02:.2f}|>" for i in range(_N_TIMESTAMPS)),
    ]


def _whisper_base_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE vocabulary of exactly 50,257 entries, laid out like Whisper's.

    Bytes first, then a few merged tokens that faster-whisper or the scripted
    model use, then CJK characters and filler, and finally the empty token ""
    (Whisper's multilingual vocabulary has it at id 50256; CTranslate2 uses it to
    tell multilingual models apart).
    """
    byte_chars = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    merges: list[tuple[str, str]] = []

    def add(token: str) -> None:
        if token not in vocab:
            vocab[token] = len(vocab)

    for ch in sorted(byte_chars, key=lambda c: ord(c)):
        add(ch)
    space = _byte_level(" ")
    # Single tokens for " -" and " '" like the real vocabulary (non_speech_tokens relies on it).
    for sym in ("-", "'"):
        merges.append((space, sym))
        add(space + sym)
    # Whole words the scripted model emits, reachable through merges too.
    for _start, _end, pieces in WHISPER_SEGMENTS:
        for piece in pieces:
            token = _byte_level(piece)
            if len(token) > 1 and token not in vocab:
                for i in range(1, len(token)):
                    left, right = token[:i], token[i:]
                    add(left)
                    if (left, right[0]) not in merges:
                        merges.append((left, right[0]))
                    add(left + right[0])
            add(token)
    # Filler: CJK ideographs, then two-letter latin words, until 50,256 entries.
    cp = 0x4E00
    while len(vocab) < _N_BASE_TOKENS - 1 and cp <= 0x9FFF:
        add(_byte_level(chr(cp)))
        cp += 1
    letters = "abcdefghijklmnopqrstuvwxyz"
    i = 0
    while len(vocab) < _N_BASE_TOKENS - 1:  # 26**4 words: more than enough, never cycles
        word = "".join(letters[(i // 26**k) % 26] for k in (3, 2, 1, 0))
        add(space + word)
        i += 1
    vocab[""] = _N_BASE_TOKENS - 1
    assert len(vocab) == _N_BASE_TOKENS
    return vocab, merges


def _build_whisper_tokenizer():
    """A `tokenizers.Tokenizer` with Whisper's multilingual layout (51,865 ids)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    vocab, merges = _whisper_base_vocab()
    tok = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=merges,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
        )
    )
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(
        [
            AddedToken(t, lstrip=False, rstrip=False, normalized=False, special=True)
            for t in _whisper_special_tokens()
        ]
    )
    assert tok.get_vocab_size() == _WHISPER_VOCAB_SIZE, tok.get_vocab_size()
    assert tok.token_to_id("<|endoftext|>") == 50257
    assert tok.token_to_id("<|0.00|>") == 50364
    return tok


def _zero_mean_orthonormal(n: int, dim: int, generator: Any) -> Any:
    """`n` orthonormal vectors in the zero-mean subspace of R^dim.

    Zero mean matters because LayerNorm subtracts the mean: LN(k*u) == sqrt(dim)*u
    for such a unit vector u, so the final LayerNorm keeps the scripted direction.
    """
    import torch

    assert n < dim
    raw = torch.randn(dim, n, generator=generator, dtype=torch.float64)
    raw -= raw.mean(dim=0, keepdim=True)
    q, _ = torch.linalg.qr(raw)
    q -= q.mean(dim=0, keepdim=True)  # already ~0; remove rounding
    q, _ = torch.linalg.qr(q)
    return q.T.to(torch.float32)


def build_tiny_whisper(dest: Path, *, quantization: str | None = "int8") -> Path:
    """Build a ~4 MB CTranslate2 Whisper model directory that faster-whisper can run offline.

    `dest` gets model.bin, config.json, vocabulary.json, tokenizer.json and
    preprocessor_config.json (the last two so faster-whisper never asks the Hub).
    """
    import ctranslate2
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    dest = Path(dest)
    tok = _build_whisper_tokenizer()
    special = {t: tok.token_to_id(t) for t in _whisper_special_tokens()[: 2 + 99 + 6]}
    eot, sot = special["<|endoftext|>"], special["<|startoftranscript|>"]
    ts0 = tok.token_to_id("<|0.00|>")

    d_model = 16
    config = WhisperConfig(
        vocab_size=_WHISPER_VOCAB_SIZE,
        num_mel_bins=80,
        d_model=d_model,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_source_positions=1500,
        max_target_positions=448,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
        begin_suppress_tokens=[tok.token_to_id(_byte_level(" ")), eot],
        suppress_tokens=[],
        tie_word_embeddings=True,
    )
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()

    # Script the decoder: output at position p is the token planned for p.
    text_ids = [tok.token_to_id(_byte_level(p)) for _s, _e, ps in WHISPER_SEGMENTS for p in ps]
    assert None not in text_ids, text_ids
    plan: list[int] = [
        special[f"<|{WHISPER_DETECTED_LANGUAGE}|>"],  # pos 0: language detection
        special["<|transcribe|>"],  # pos 1: forced prefix anyway
    ]
    for start, end, pieces in WHISPER_SEGMENTS:
        plan.append(ts0 + round(start / 0.02))
        plan.extend(tok.token_to_id(_byte_level(p)) for p in pieces)
        plan.append(ts0 + round(end / 0.02))
    plan.append(eot)
    targets = sorted(set(plan))
    directions = _zero_mean_orthonormal(len(targets), d_model, generator)
    direction_of = dict(zip(targets, directions, strict=True))
    with torch.no_grad():
        emb = model.model.decoder.embed_tokens.weight
        emb.normal_(0.0, 0.02, generator=generator)
        for token_id, u in direction_of.items():
            emb[token_id] = 5.0 * u  # logit 5*sqrt(16)=20 vs ~0 for the rest
        pos = model.model.decoder.embed_positions.weight
        for p in range(pos.shape[0]):
            pos[p] = 100.0 * direction_of[plan[p] if p < len(plan) else eot]
        model.model.decoder.layer_norm.weight.fill_(1.0)
        model.model.decoder.layer_norm.bias.zero_()
        model.proj_out.weight = model.model.decoder.embed_tokens.weight

    lang_to_id = {f"<|{c}|>": special[f"<|{c}|>"] for c in _whisper_languages()}
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        bos_token_id=eot,
        suppress_tokens=[],
        begin_suppress_tokens=config.begin_suppress_tokens,
        alignment_heads=[[0, 0], [0, 1]],
        lang_to_id=lang_to_id,
        task_to_id={"transcribe": special["<|transcribe|>"], "translate": special["<|translate|>"]},
        is_multilingual=True,
        no_timestamps_token_id=special["<|notimestamps|>"],
        max_initial_timestamp_index=50,
        max_length=448,
    )

    with tempfile.TemporaryDirectory(prefix="tiny-whisper-hf-") as tmp:
        model.save_pretrained(tmp)
        tok.save(str(Path(tmp) / "tokenizer.json"))
        (Path(tmp) / "tokenizer_config.json").write_text(
            json.dumps(
                {
                    "tokenizer_class": "WhisperTokenizer",
                    "unk_token": "<|endoftext|>",
                    "bos_token": "<|endoftext|>",
                    "eos_token": "<|endoftext|>",
                    "pad_token": "<|endoftext|>",
                    "model_max_length": 448,
                }
            ),
            encoding="utf-8",
        )
        WhisperFeatureExtractor(feature_size=80).save_pretrained(tmp)
        ctranslate2.converters.TransformersConverter(
            tmp, copy_files=["tokenizer.json", "preprocessor_config.json"]
        ).convert(str(dest), quantization=quantization, force=True)
    return dest


def build_tiny_wav2vec2(dest: Path) -> Path:
    """Build a tiny random Wav2Vec2ForCTC + processor (CJK and latin characters) at `dest`.

    The feature encoder keeps wav2vec2's seven conv layers (strides 5,2,2,2,2,2,2)
    so frames are 20 ms at 16 kHz, exactly like the real aligners whisperx uses.
    """
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    symbols = ["<pad>", "<s>", "</s>", "<unk>", "|", *_ALIGN_LATIN, *_ALIGN_CJK]
    vocab = {s: i for i, s in enumerate(dict.fromkeys(symbols))}
    with tempfile.TemporaryDirectory(prefix="tiny-w2v2-vocab-") as tmp:
        vocab_file = Path(tmp) / "vocab.json"
        vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        tokenizer = Wav2Vec2CTCTokenizer(
            str(vocab_file),
            unk_token="<unk>",
            pad_token="<pad>",
            bos_token="<s>",
            eos_token="</s>",
            word_delimiter_token="|",
        )
    feature_extractor = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=False,
    )
    config = Wav2Vec2Config(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8,) * 7,
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="group",
        do_stable_layer_norm=False,
        pad_token_id=vocab["<pad>"],
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
        mask_time_prob=0.0,
    )
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(config).eval()
    model.save_pretrained(dest)
    # transformers 5 folds the feature extractor into processor_config.json; older
    # readers (and whisperx users' habits) expect preprocessor_config.json as well.
    feature_extractor.save_pretrained(dest)
    Wav2Vec2Processor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(dest)
    return dest


TORCHAUDIO_EN_BUNDLE = "WAV2VEC2_ASR_BASE_960H"
TORCHAUDIO_EN_FILE = "wav2vec2_fairseq_base_ls960_asr_ls960.pth"


def build_tiny_torchaudio_bundle(dest_file: Path) -> Path:
    """Write a ~60 KB checkpoint that torchaudio's WAV2VEC2_ASR_BASE_960H bundle loads.

    The bundle's architecture is fixed (wav2vec2 base, 95M parameters), so the
    *file* is made tiny instead: every tensor is a strided view (``as_strided``
    with all strides 1, a Toeplitz-like pattern) of one shared 4,096-value random
    storage, norm gains are a broadcast 1 and biases a broadcast 0.  torch.save
    stores each storage once, and ``load_state_dict`` copies the views into the
    full-size parameters.  Loading still costs the real model's ~380 MB of RAM and
    base-model CPU time, so tests should use it sparingly.  Save it as
    ``<model_dir>/wav2vec2_fairseq_base_ls960_asr_ls960.pth`` (or under
    ``$TORCH_HOME/hub/checkpoints/``) for ``whisperx.load_align_model("en", ...)``.
    """
    import torch
    import torchaudio
    from torchaudio.pipelines._wav2vec2 import utils as w2v_utils

    dest_file = Path(dest_file)
    dest_file.parent.mkdir(parents=True, exist_ok=True)
    bundle = getattr(torchaudio.pipelines, TORCHAUDIO_EN_BUNDLE)
    # Only the shapes are needed.  A plain CPU build (~1 s) beats device="meta", whose
    # first use imports torch._refs/_prims: ~8 s when bytecode caching is off.
    model = w2v_utils._get_model(bundle._model_type, bundle._params)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    del model
    # The checkpoint keeps fairseq's 3 unused dictionary rows in the CTC head; the
    # bundle drops rows 1, 2, 3 after loading (_remove_aux_axes).
    removed = tuple(getattr(bundle, "_remove_aux_axis", ()) or ())
    for key in ("aux.weight", "aux.bias"):
        shapes[key] = (shapes[key][0] + len(removed), *shapes[key][1:])

    generator = torch.Generator().manual_seed(0)
    pool = torch.randn(4096, generator=generator) * 0.05
    one, zero = torch.ones(1), torch.zeros(1)
    state: dict[str, Any] = {}
    for key, shape in shapes.items():
        if key.endswith("bias"):
            state[key] = zero.expand(shape)
        elif key.endswith("norm.weight") or key.endswith("original0"):
            state[key] = one.expand(shape)  # LayerNorm/GroupNorm gains, weight-norm g
        else:
            assert sum(n - 1 for n in shape) < pool.numel(), key
            state[key] = pool.as_strided(shape, (1,) * len(shape))
    torch.save(state, dest_file)
    return dest_file


def build_punkt_tab(dest_root: Path) -> Path:
    """Write a minimal nltk ``punkt_tab`` model so whisperx never calls nltk.download.

    With `dest_root` on ``nltk.data.path``, ``nltk.data.load('tokenizers/punkt/english.pickle')``
    resolves to ``<dest_root>/tokenizers/punkt_tab/english/``.  Empty tables give a
    plain punkt splitter (sentence breaks after . ! ?), which is all alignment needs.
    """
    dest_root = Path(dest_root)
    lang_dir = dest_root / "tokenizers" / "punkt_tab" / "english"
    lang_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "collocations.tab": "",
        "sent_starters.txt": "",
        "abbrev_types.txt": "dr\nmr\nmrs\ne.g\ni.e\n",
        "ortho_context.tab": "",
    }
    for name, content in files.items():
        (lang_dir / name).write_text(content, encoding="utf-8")
    return dest_root


def make_wav(path: Path, seconds: float = 3.0, sample_rate: int = 16000) -> Path:
    """Write a deterministic speech-like 16-bit mono wav: voiced bursts with pauses.

    Bursts are harmonic stacks with a slow pitch glide plus a little pseudo-random
    noise (fixed LCG, no numpy needed), 0.35 s on / 0.15 s off.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(round(seconds * sample_rate))
    state = 12345
    frames = bytearray()
    for i in range(n):
        t = i / sample_rate
        phase_in_cycle = t % 0.5
        state = (1103515245 * state + 12345) & 0x7FFFFFFF
        noise = (state / 0x7FFFFFFF - 0.5) * 0.02
        sample = noise
        if phase_in_cycle < 0.35:
            env = math.sin(math.pi * phase_in_cycle / 0.35)
            f0 = 140.0 + 40.0 * math.sin(2 * math.pi * 0.7 * t)
            voiced = sum(math.sin(2 * math.pi * f0 * h * t) / h for h in (1, 2, 3, 4, 5))
            sample += 0.25 * env * voiced
        value = max(-32768, min(32767, int(sample * 32767)))
        frames += struct.pack("<h", value)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(bytes(frames))
    return path


# What the tiny pyannote pipeline's config.yaml names, as the real speaker-diarization-3.1 does.
PYANNOTE_PIPELINE = "pyannote/speaker-diarization-3.1"
PYANNOTE_SEGMENTATION = "pyannote/segmentation-3.0"
PYANNOTE_EMBEDDING = "pyannote/wespeaker-voxceleb-resnet34-LM"


@dataclass(frozen=True)
class TinyPyannote:
    """Random-weight pyannote models in the layouts of the Hub repos (say nothing about quality)."""

    pipeline: Path  # config.yaml naming the two models below by repo id
    segmentation: Path  # PyanNet (SincNet + 1 small LSTM layer), powerset of 3 speakers, 2 at once
    embedding: Path  # WeSpeaker ResNet34, the real architecture (26.6 MB) with random weights


def _save_pyannote_checkpoint(model: Any, dest: Path) -> Path:
    """Save ``model`` the way pyannote's own conversion script does (a Lightning-style dict)."""
    import lightning.pytorch as pl
    import torch

    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": pl.__version__,
    }
    model.on_save_checkpoint(checkpoint)  # pyannote's versions, architecture, specifications
    dest.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, dest / "pytorch_model.bin")
    return dest / "pytorch_model.bin"


def build_tiny_pyannote(dest: Path) -> TinyPyannote:
    """A speaker-diarization-3.1 pipeline and its two models, random but loadable by pyannote 3.4."""
    import torch
    import yaml
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34
    from pyannote.audio.models.segmentation import PyanNet

    dest = Path(dest)
    torch.manual_seed(0)
    segmentation = PyanNet(
        sincnet={"stride": 10},
        lstm={"hidden_size": 16, "num_layers": 1, "bidirectional": True, "monolithic": True, "dropout": 0.0},
        linear={"hidden_size": 16, "num_layers": 1},
        sample_rate=16000,
        num_channels=1,
    )
    segmentation.specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION,
        resolution=Resolution.FRAME,
        duration=10.0,
        warm_up=(0.0, 0.0),
        classes=["speaker#1", "speaker#2", "speaker#3"],
        powerset_max_classes=2,
        permutation_invariant=True,
    )
    segmentation.setup()  # adds the powerset classifier for those specifications
    _save_pyannote_checkpoint(segmentation, dest / "segmentation")
    embedding = WeSpeakerResNet34()
    # pyannote's wespeaker/convert.py: "duration = 5.0  # whatever"
    embedding.specifications = Specifications(
        problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=5.0
    )
    _save_pyannote_checkpoint(embedding, dest / "embedding")
    for folder, name in ((dest / "segmentation", "segmentation"), (dest / "embedding", "embedding")):
        (folder / "config.yaml").write_text(f"# tiny random {name} model for tests\n")
    pipeline = dest / "pipeline"
    pipeline.mkdir(parents=True, exist_ok=True)
    config = {
        "version": "3.1.0",
        "pipeline": {
            "name": "pyannote.audio.pipelines.SpeakerDiarization",
            "params": {
                "clustering": "AgglomerativeClustering",
                "embedding": PYANNOTE_EMBEDDING,
                "embedding_batch_size": 32,
                "embedding_exclude_overlap": True,
                "segmentation": PYANNOTE_SEGMENTATION,
                "segmentation_batch_size": 32,
            },
        },
        "params": {
            "clustering": {"method": "centroid", "min_cluster_size": 12, "threshold": 0.7045654963945799},
            "segmentation": {"min_duration_off": 0.0},
        },
    }
    (pipeline / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (pipeline / "README.md").write_text("tiny random speaker-diarization-3.1 for tests\n")
    return TinyPyannote(pipeline, dest / "segmentation", dest / "embedding")


@dataclass(frozen=True)
class TinyModels:
    whisper: Path
    wav2vec2: Path
    nltk_root: Path
    wav: Path
    build_seconds: float


def build_all(root: Path) -> TinyModels:
    """Build every tiny model under `root` (for a session-scoped fixture).

    `build_seconds` times the generation itself, not the one-off heavy imports.
    """
    # Imports take tens of seconds cold (no bytecode cache here); time the work only.
    import ctranslate2.converters  # noqa: F401
    from transformers import Wav2Vec2ForCTC, WhisperForConditionalGeneration  # noqa: F401

    root = Path(root)
    started = time.perf_counter()
    whisper = build_tiny_whisper(root / "whisper")
    wav2vec2 = build_tiny_wav2vec2(root / "wav2vec2")
    nltk_root = build_punkt_tab(root / "nltk")
    wav = make_wav(root / "speech.wav")
    return TinyModels(whisper, wav2vec2, nltk_root, wav, time.perf_counter() - started)
