"""``python -m modelmgr``: list, download, delete and verify models from a terminal.

The same managers as the web app, so the same dedupe, resume, bundling and
integrity rules apply; progress is shown with tqdm.
"""

from __future__ import annotations

import argparse
import sys
import time

from tqdm import tqdm

from .errors import InvalidInput, ModelMgrError, ModelNotFound
from .services import Services
from .settings import Settings


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
    return parser


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    args = build_parser().parse_args(argv)
    services = Services.build(settings or Settings())
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


def run() -> None:
    """Console script ``modelmgr``."""
    sys.exit(main())
