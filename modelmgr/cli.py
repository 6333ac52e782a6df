"""``python -m modelmgr``: list, download, delete and verify models from a terminal.

The same managers as the web app, so the same dedupe, resume, bundling and
integrity rules apply; progress is shown with tqdm.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from .errors import InvalidInput, ModelMgrError, ModelNotFound
from .services import Services
from .settings import Settings
from .transcriptions import FINISHED, FORMATS, JobOptions, TranscriptionManager


def _human(n: int | None) -> str:
    if not n:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def cmd_list(services: Services, args: argparse.Namespace) -> int:
    rows = services.downloads.snapshot()
    if args.downloaded:
        rows = [m for m in rows if m["status"] == "downloaded"]
    width = max(len(m["id"]) for m in rows) if rows else 10
    for m in rows:
        size = _human(m["size_bytes"])
        print(f"{m['id']:<{width}}  {m['kind']:<7}  {m['language'] or '-':<4}  {size:>8}  {m['status']}")
    return 0


def _follow(services: Services, model_id: str) -> str:
    """Show one model's job until it ends; returns its final status."""
    job = services.downloads.job(model_id)
    if job is None:
        return services.downloads.describe(services.catalog.get(model_id))["status"]
    with tqdm(desc=model_id, unit="B", unit_scale=True, unit_divisor=1024, leave=True) as bar:
        while not job.done.wait(0.2):
            if job.bytes_total and bar.total != job.bytes_total:
                bar.total = job.bytes_total
            bar.update(job.bytes_done - bar.n)
        bar.update(job.bytes_done - bar.n)
    if job.error:
        print(f"{model_id}: {job.error}", file=sys.stderr)
    return job.status


def cmd_download(services: Services, args: argparse.Namespace) -> int:
    languages = [x for x in args.languages.split(",") if x] if args.languages else None
    result = services.downloads.start(args.model, languages=languages, with_align=not args.no_align)
    print(f"{args.model}: {result.status}")
    statuses = [_follow(services, services.catalog.get(args.model).id)]
    bundle = result.job.bundle if result.job else ()
    if result.job is None:  # already here: its alignment models may still be on their way
        specs = services.catalog.align_models_for(services.catalog.get(args.model), languages or [])
        bundle = tuple(s.id for s in specs)
    for align_id in bundle:
        # The bundle starts when the Whisper job ends; give it a moment to register.
        deadline = time.monotonic() + 10
        while services.downloads.job(align_id) is None and time.monotonic() < deadline:
            if services.downloads.describe(services.catalog.get(align_id))["status"] == "downloaded":
                break
            time.sleep(0.05)
        statuses.append(_follow(services, align_id))
    return 0 if all(s == "downloaded" for s in statuses) else 1


def cmd_delete(services: Services, args: argparse.Namespace) -> int:
    print(f"{args.model}: freed {_human(services.downloads.delete(args.model))}")
    return 0


def cmd_verify(services: Services, args: argparse.Namespace) -> int:
    problems = services.store.verify(services.catalog.get(args.model))
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{args.model}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
    return 0 if not problems else 1


def cmd_transcribe(services: Services, args: argparse.Namespace) -> int:
    """Queue every file, show each job's progress, write ``<stem>.<format>`` files into ``--out``."""
    formats = tuple(f.strip().lower() for f in args.format.split(",") if f.strip()) or ("srt",)
    options = JobOptions(
        model=args.model,
        language=None if args.language in (None, "", "auto") else args.language,
        device=args.device,
        task=args.task,
        word_timestamps=not args.no_align,
        vad=args.vad,
        batch_size=args.batch_size,
        initial_prompt=args.prompt,
        formats=formats,
    )
    files = [Path(f) for f in args.files]
    for path in files:
        if not path.is_file():
            raise InvalidInput(f"{path}: no such file")
    out = Path(args.out)
    work = Path(tempfile.mkdtemp(prefix="transcriptions-", dir=_work_parent(services)))
    # A private job folder: a server sharing this cache keeps its own queue to itself.
    manager = TranscriptionManager(
        services.settings, services.catalog, services.downloads, services.preload, services.bus, root=work
    )
    try:
        manager.validate(options)
        jobs = []
        for path in files:
            upload = work / f".upload-{len(jobs)}"
            shutil.copyfile(path, upload)
            jobs.append((path, manager.submit(upload, path.name, options)))
        failed = 0
        for path, job in jobs:
            status = _follow_job(job, path.name)
            if status != "done":
                failed += 1
                message = job.error["message"] if job.error else status
                print(f"{path.name}: {message}", file=sys.stderr)
                continue
            out.mkdir(parents=True, exist_ok=True)
            for fmt in formats:
                target = out / f"{path.stem}.{fmt}"
                shutil.copyfile(manager.result(job.id, fmt), target)
                print(target)
        return 0 if not failed else 1
    finally:
        manager.shutdown()
        shutil.rmtree(work, ignore_errors=True)


def _work_parent(services: Services) -> Path:
    parent = services.settings.state_dir
    parent.mkdir(parents=True, exist_ok=True)
    return parent


def _follow_job(job, name: str) -> str:
    """A progress bar per file: percent of the current stage, the stage as its description."""
    with tqdm(
        total=100, desc=name, unit="%", bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}"
    ) as bar:
        while not job.done.wait(0.2):
            bar.set_postfix_str(job.status, refresh=False)
            bar.n = min(100.0, job.progress)
            bar.refresh()
        bar.set_postfix_str(job.status, refresh=False)
        bar.n = 100 if job.status == "done" else bar.n
        bar.refresh()
    return job.status if job.status in FINISHED else "error"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m modelmgr", description="WhisperX Studio model manager")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="every known model and its state")
    p.add_argument("--downloaded", action="store_true")
    p.set_defaults(run=cmd_list)
    p = sub.add_parser("download", help="download a model (and its alignment models)")
    p.add_argument("model")
    p.add_argument("--languages", help="comma-separated, e.g. zh,ja: bring their alignment models")
    p.add_argument("--no-align", action="store_true")
    p.set_defaults(run=cmd_download)
    p = sub.add_parser("delete", help="remove a model's files")
    p.add_argument("model")
    p.set_defaults(run=cmd_delete)
    p = sub.add_parser("verify", help="re-hash a model's files against its manifest")
    p.add_argument("model")
    p.set_defaults(run=cmd_verify)
    p = sub.add_parser(
        "transcribe", help="transcribe audio files into subtitles (downloads the model if needed)"
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--model", default="small")
    p.add_argument("--language", help="e.g. zh; detected when left out")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--task", default="transcribe", choices=("transcribe", "translate"))
    p.add_argument("--format", default="srt", help=f"comma-separated: {','.join(FORMATS)}")
    p.add_argument("--out", default=".", help="folder for <name>.<format> (default: here)")
    p.add_argument("--no-align", action="store_true", help="segment times only, no word alignment")
    p.add_argument("--vad", action="store_true", help="skip silence with the Silero VAD")
    p.add_argument("--batch-size", type=int, help="batched inference (default: 16 on CUDA, measured on CPU)")
    p.add_argument("--prompt", help="initial prompt: names, spellings, style")
    p.set_defaults(run=cmd_transcribe)
    sub.add_parser("worker", help="distributed mode: run transcription jobs from Redis (see `worker --help`)")
    return parser


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:  # distributed mode: a Celery worker (imports Celery only here)
        from .distributed.worker import main as worker_main

        return worker_main(argv[1:])
    args = build_parser().parse_args(argv)
    # The CLI works on this machine's cache even where MODELMGR_REDIS_URL is set (no Redis needed).
    services = Services.build(settings or Settings(), transcriptions=TranscriptionManager)
    try:
        return args.run(services, args)
    except (InvalidInput, ModelNotFound) as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except ModelMgrError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        services.downloads.shutdown()
        return 130
