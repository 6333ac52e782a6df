"""``modelmgr`` / ``python -m modelmgr``: models from a terminal or a script.

Two ways to run, the same commands:

* **In-process** (default): the web app's own managers in this process, so the
  same dedupe, resume, bundling and integrity rules apply to the local cache.
* **Against a running server** (``--url`` or ``MODELMGR_URL``, with ``--token`` /
  ``MODELMGR_AUTH_TOKEN``): the server downloads and preloads; progress comes
  from its event stream (``/api/events``) and is shown with tqdm on stderr.

``--json`` prints machine-readable JSON on stdout (the API's ``Model`` objects);
progress bars and messages go to stderr, so stdout stays parseable.

Exit codes (also in ``--help`` and the README):
0 done; 1 the operation failed (download error, cancelled, verify found
problems, preload error, server refused with 409/5xx); 2 bad input (usage,
unknown model or language, 4xx); 3 the server cannot be reached or refused the
token; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import queue
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from tqdm import tqdm

from modelmgr.asr.jobs import FINISHED, FORMATS, JobOptions, TranscriptionManager
from modelmgr.asr.manager import JobManager
from modelmgr.cli.client import ServerError, ServerUnreachable, StudioClient
from modelmgr.core.errors import InvalidInput, ModelMgrError, ModelNotFound, NotDownloading
from modelmgr.core.settings import Settings
from modelmgr.models.manifests import verify_verdict

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_CODES = """exit codes:
  0    done
  1    the operation failed (download error, cancelled, verify problems, preload error, busy)
  2    bad input (usage, unknown model or language)
  3    the server cannot be reached or refused the token (--url)
  130  interrupted"""
IN_FLIGHT = frozenset({"queued", "downloading", "verifying"})
# The hub's refusals, passed on by the server with 401/403 like the studio's own (unauthorized,
# forbidden_host, cross_origin: exit 3): these are a failed operation (exit 1), told apart by code.
HUB_REFUSALS = frozenset({"auth_required", "gated_repo", "access_denied"})
ENDED = frozenset({"downloaded", "error", "cancelled"})
BUNDLE_GRACE_S = 3.0  # a bundled alignment download starts right after its Whisper model ends


def _human(n: int | None) -> str:
    if not n:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _print_table(rows: list[dict[str, Any]]) -> None:
    width = max(len(m["id"]) for m in rows) if rows else 10
    for m in rows:
        size = _human(m["size_bytes"])
        print(f"{m['id']:<{width}}  {m['kind']:<11}  {m['language'] or '-':<4}  {size:>8}  {m['status']}")


def _languages(args: argparse.Namespace) -> list[str] | None:
    return [x for x in args.languages.split(",") if x] if args.languages else None


def _formats(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(f.strip().lower() for f in args.format.split(",") if f.strip()) or ("srt",)


def _input_files(args: argparse.Namespace) -> list[Path]:
    files = [Path(f) for f in args.files]
    for path in files:
        if not path.is_file():
            raise InvalidInput(f"{path}: no such file")
    return files


def _diarize_fields(args: argparse.Namespace) -> dict[str, str]:
    """The diarization options as the jobs API's form fields (the server checks them, as in-process)."""
    fields = {"diarize": "true"} if args.diarize else {}
    for name in ("num_speakers", "min_speakers", "max_speakers", "diarize_model"):
        value = getattr(args, name)
        if value is not None:
            fields[name] = str(value)
    return fields


def _job_bar(name: str) -> tqdm:
    """A progress bar per file: percent of the current stage, the stage as its postfix."""
    return tqdm(total=100, desc=name, unit="%", bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")


# ----------------------------------------------------------------------------
# In-process: the managers of this process
# ----------------------------------------------------------------------------
class Local:
    def __init__(self, settings: Settings) -> None:
        from modelmgr.services import Services  # the managers; not needed to talk to a server

        # This machine's cache even where MODELMGR_REDIS_URL is set (no Redis needed).
        self.services = Services.build(settings, transcriptions=TranscriptionManager)

    def close(self) -> None:
        self.services.downloads.shutdown()

    def list(self, args: argparse.Namespace) -> int:
        rows = self.services.downloads.snapshot()
        if args.downloaded:
            rows = [m for m in rows if m["status"] == "downloaded"]
        _print_json({"models": rows}) if args.json else _print_table(rows)
        return EXIT_OK

    def status(self, args: argparse.Namespace) -> int:
        model = self.services.downloads.describe(self.services.catalog.get(args.model))
        _print_json(model) if args.json else _print_table([model])
        return EXIT_OK

    def _follow(self, model_id: str) -> str:
        """Show one model's job until it ends; returns its final status."""
        services = self.services
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
            _say(f"{model_id}: {job.error}")
        return job.status

    def download(self, args: argparse.Namespace) -> int:
        services, languages = self.services, _languages(args)
        result = services.downloads.start(args.model, languages=languages, with_align=not args.no_align)
        _say(f"{args.model}: {result.status}")
        ids = [services.catalog.get(args.model).id]
        statuses = [self._follow(ids[0])]
        bundle = result.job.bundle if result.job else ()
        if result.job is None and not args.no_align:  # already here: its alignment models may be on their way
            specs = services.catalog.align_models_for(services.catalog.get(args.model), languages or [])
            bundle = tuple(s.id for s in specs)
        if result.job is None and services.catalog.get(args.model).is_diarizer:  # its models may be coming
            bundle = tuple(services.downloads.describe(services.catalog.get(args.model))["parts"])
        for align_id in bundle:
            # The bundle starts when the Whisper job ends; give it a moment to register.
            deadline = time.monotonic() + 10
            while services.downloads.job(align_id) is None and time.monotonic() < deadline:
                if services.downloads.describe(services.catalog.get(align_id))["status"] == "downloaded":
                    break
                time.sleep(0.05)
            ids.append(align_id)
            statuses.append(self._follow(align_id))
        if args.json:
            _print_json({"models": [services.downloads.describe(services.catalog.get(i)) for i in ids]})
        return EXIT_OK if all(s == "downloaded" for s in statuses) else EXIT_FAILED

    def delete(self, args: argparse.Namespace) -> int:
        _say(f"{args.model}: freed {_human(self.services.downloads.delete(args.model))}")
        return EXIT_OK

    def verify(self, args: argparse.Namespace) -> int:
        spec = self.services.catalog.get(args.model)
        problems = self.services.store.verify(spec)
        for problem in problems:
            _say(problem)
        if problems:
            print(f"{args.model}: {len(problems)} problem(s)")
            return EXIT_FAILED
        # "ok" only when every file matched a digest: a size match is said to be no more than that
        result, message = verify_verdict(self.services.store.load_manifest(spec), problems)
        print(f"{args.model}: {'ok' if result == 'verified' else message}")
        return EXIT_OK

    def cancel(self, args: argparse.Namespace) -> int:
        _say("cancel stops a download on a running server: give --url (or MODELMGR_URL)")
        return EXIT_BAD_INPUT

    def transcribe(self, args: argparse.Namespace) -> int:
        """Queue every file, show each job's progress, write ``<stem>.<format>`` files into ``--out``."""
        services, formats = self.services, _formats(args)
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
            diarize=args.diarize,
            num_speakers=args.num_speakers,
            min_speakers=args.min_speakers,
            max_speakers=args.max_speakers,
            diarize_model=args.diarize_model,
        )
        files = _input_files(args)
        out = Path(args.out)
        parent = services.settings.state_dir
        parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="transcriptions-", dir=parent))
        # A private job folder: a server sharing this cache keeps its own queue to itself.
        manager: JobManager = TranscriptionManager(
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
                    _say(f"{path.name}: {job.error['message'] if job.error else status}")
                    continue
                out.mkdir(parents=True, exist_ok=True)
                for fmt in formats:
                    target = out / f"{path.stem}.{fmt}"
                    shutil.copyfile(manager.result(job.id, fmt), target)
                    print(target)
            return EXIT_OK if not failed else EXIT_FAILED
        finally:
            manager.shutdown()
            shutil.rmtree(work, ignore_errors=True)

    def preload(self, args: argparse.Namespace) -> int:
        _say("preload loads models into a running server: give --url (or MODELMGR_URL)")
        return EXIT_BAD_INPUT


def _follow_job(job: Any, name: str) -> str:
    with _job_bar(name) as bar:
        while not job.done.wait(0.2):
            bar.set_postfix_str(job.status, refresh=False)
            bar.n = min(100.0, job.progress)
            bar.refresh()
        bar.set_postfix_str(job.status, refresh=False)
        bar.n = 100 if job.status == "done" else bar.n
        bar.refresh()
    return job.status if job.status in FINISHED else "error"


# ----------------------------------------------------------------------------
# Against a running server: its REST API and its event stream
# ----------------------------------------------------------------------------
class _EventPump:
    """Reads the server's event stream in a thread, so the caller can wait with a deadline."""

    def __init__(self, client: StudioClient) -> None:
        self.events: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(client,), name="cli-events", daemon=True)
        self.thread.start()

    def _run(self, client: StudioClient) -> None:
        try:
            with client.events() as stream:
                for event in stream:
                    self.events.put(event)
                    self.ready.set()
                    if self.stop.is_set():
                        return
        except (ServerError, ServerUnreachable) as exc:
            self.events.put(exc)
        except Exception as exc:  # the stream was closed under us; the caller sees it as an end
            self.events.put(ServerUnreachable(f"event stream ended: {exc}"))
        finally:
            self.ready.set()

    def wait_snapshot(self, timeout_s: float = 30.0) -> dict[str, Any]:
        event = self.next(timeout_s)
        if event is None or event.event != "snapshot":
            raise ServerUnreachable("the server's event stream did not start with a snapshot")
        return json.loads(event.data)

    def next(self, timeout_s: float) -> Any:
        try:
            item = self.events.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if isinstance(item, Exception):
            raise item
        return item


class Bars:
    """One tqdm bar per model in flight, fed from ``model_progress`` events."""

    def __init__(self) -> None:
        self.bars: dict[str, tqdm] = {}

    def update(self, model: str, status: str, progress: dict[str, Any]) -> None:
        if status not in IN_FLIGHT and model not in self.bars:
            return
        bar = self.bars.get(model)
        if bar is None:
            bar = self.bars[model] = tqdm(desc=model, unit="B", unit_scale=True, unit_divisor=1024)
        total = progress.get("bytes_total")
        if total and bar.total != total:
            bar.total = total
        bar.update((progress.get("bytes_done") or 0) - bar.n)
        if status in ENDED:
            bar.set_postfix_str(status)
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


class Remote:
    def __init__(self, settings: Settings) -> None:
        token = settings.auth_token.get_secret_value() if settings.auth_token else None
        self.client = StudioClient(settings.url or "", token, timeout_s=settings.download_timeout_s)

    def close(self) -> None:
        self.client.close()

    def list(self, args: argparse.Namespace) -> int:
        rows = self.client.models()
        if args.downloaded:
            rows = [m for m in rows if m["status"] == "downloaded"]
        _print_json({"models": rows}) if args.json else _print_table(rows)
        return EXIT_OK

    def status(self, args: argparse.Namespace) -> int:
        model = self.client.model(args.model)
        _print_json(model) if args.json else _print_table([model])
        return EXIT_OK

    def _watch(
        self,
        until: Callable[[dict[str, dict], float], bool],
        start: Callable[[], Any],
        on_event: Callable[[Any, dict[str, dict]], None] | None = None,
    ) -> dict:
        """Subscribe, run ``start``, then feed bars until ``until(states, now)`` holds."""
        pump = _EventPump(self.client)
        bars = Bars()
        try:
            snapshot = pump.wait_snapshot()  # subscribed before asking: no event is missed
            states: dict[str, dict] = {m["id"]: m for m in snapshot["models"]}
            states["__preload__"] = snapshot.get("preload") or {}
            states["__answer__"] = start()
            while not until(states, time.monotonic()):
                event = pump.next(0.5)
                if event is None:
                    continue
                if event.event == "model_progress":
                    data = json.loads(event.data)
                    states.setdefault(data["model"], {}).update(
                        status=data["status"], progress=data["progress"], error=data.get("error")
                    )
                    states[data["model"]]["seen"] = True
                    bars.update(data["model"], data["status"], data["progress"] or {})
                elif event.event == "preload":
                    states["__preload__"] = json.loads(event.data)
                elif event.event == "snapshot":  # a fresh snapshot after lagging behind
                    for m in json.loads(event.data)["models"]:
                        states.setdefault(m["id"], {}).update(m)
                if on_event is not None:
                    on_event(event, states)
            return states
        finally:
            bars.close()
            pump.stop.set()

    def download(self, args: argparse.Namespace) -> int:
        languages = _languages(args)
        followed: list[str] = []
        ended_at: dict[str, float] = {}

        def start() -> dict:
            answer = self.client.download(args.model, languages, not args.no_align)
            _say(f"{args.model}: {answer['status']}")
            return answer

        def until(states: dict[str, dict], now: float) -> bool:
            answer = states["__answer__"]
            if not followed:
                model = answer["model"]
                followed.append(model["id"])
                states[model["id"]] = {**states.get(model["id"], {}), **model}
                followed.extend(model.get("parts") or [])  # a diarization pipeline brings its models
                if not args.no_align:
                    wanted = set(model.get("align_models") or [])
                    if languages:  # the alignment models of the asked languages, as the server bundles them
                        wanted |= {
                            m["id"]
                            for m in states.values()
                            if m.get("kind") == "align" and m.get("language") in languages
                        }
                    followed.extend(sorted(wanted))
            for model_id in followed:
                status = states.get(model_id, {}).get("status")
                if status in IN_FLIGHT:
                    ended_at.pop(model_id, None)
                else:
                    ended_at.setdefault(model_id, now)
            whisper_end = ended_at.get(followed[0])
            return (
                whisper_end is not None
                and len(ended_at) == len(followed)
                and now - whisper_end >= (BUNDLE_GRACE_S if len(followed) > 1 else 0)
            )

        states = self._watch(until, start)
        models = [self.client.model(model_id) for model_id in followed]
        for m in models:
            if m["status"] != "downloaded":
                _say(f"{m['id']}: {m['status']}" + (f" ({m['error']})" if m.get("error") else ""))
        if args.json:
            _print_json({"status": states["__answer__"]["status"], "models": models})
        # An alignment model that was never started (another language's) is not a failure of this one.
        failed = [m for m in models if m["status"] in ("error", "cancelled", "incomplete")]
        return EXIT_OK if models[0]["status"] == "downloaded" and not failed else EXIT_FAILED

    def delete(self, args: argparse.Namespace) -> int:
        _say(f"{args.model}: freed {_human(self.client.delete(args.model)['freed_bytes'])}")
        return EXIT_OK

    def cancel(self, args: argparse.Namespace) -> int:
        answer = self.client.cancel(args.model)
        _say(f"{args.model}: {answer['status']}")
        return EXIT_OK

    def verify(self, args: argparse.Namespace) -> int:
        _say("verify re-hashes files on this machine: run it without --url where the cache is")
        return EXIT_BAD_INPUT

    def transcribe(self, args: argparse.Namespace) -> int:
        """Upload every file as a job, follow their ``transcription`` events, fetch the results."""
        formats, files = _formats(args), _input_files(args)
        fields: dict[str, Any] = {
            "model": args.model,
            "device": args.device,
            "task": args.task,
            "word_timestamps": str(not args.no_align).lower(),
            "vad": str(args.vad).lower(),
            "formats": ",".join(formats),
        }
        if args.language not in (None, "", "auto"):
            fields["language"] = args.language
        if args.batch_size:
            fields["batch_size"] = str(args.batch_size)
        if args.prompt:
            fields["initial_prompt"] = args.prompt
        fields.update(_diarize_fields(args))
        jobs: dict[str, tuple[Path, dict]] = {}
        bars: dict[str, tqdm] = {}

        def start() -> dict:
            for path in files:
                job = self.client.submit(path, fields)
                jobs[job["id"]] = (path, job)
            return {}

        def until(states: dict[str, dict], now: float) -> bool:
            return all(states.get(f"job:{i}", job).get("status") in FINISHED for i, (_, job) in jobs.items())

        def on_event(event: Any, states: dict[str, dict]) -> None:
            if event.event != "transcription":
                return
            data = json.loads(event.data)
            if data.get("id") not in jobs:
                return
            states[f"job:{data['id']}"] = data
            bar = bars.get(data["id"]) or bars.setdefault(data["id"], _job_bar(jobs[data["id"]][0].name))
            bar.set_postfix_str(data["status"], refresh=False)
            bar.n = 100 if data["status"] == "done" else min(100.0, float(data.get("progress") or 0))
            bar.refresh()

        try:
            self._watch(until, start, on_event)
        finally:
            for bar in bars.values():
                bar.close()
        out, failed = Path(args.out), 0
        for job_id, (path, _) in jobs.items():
            job = self.client.job(job_id)
            if job["status"] != "done":
                failed += 1
                _say(f"{path.name}: {(job.get('error') or {}).get('message') or job['status']}")
                continue
            out.mkdir(parents=True, exist_ok=True)
            for fmt in formats:
                target = out / f"{path.stem}.{fmt}"
                target.write_bytes(self.client.result(job_id, fmt))
                print(target)
        return EXIT_OK if not failed else EXIT_FAILED

    def preload(self, args: argparse.Namespace) -> int:
        def start() -> dict:
            return self.client.preload(args.model, args.language, args.device)

        def until(states: dict[str, dict], now: float) -> bool:
            state = (states["__preload__"] or {}).get("state")
            answered = states["__answer__"].get("state")
            return answered in ("ready", "error") or state in ("ready", "error")

        self._watch(until, start)
        status = self.client.preload_status()
        if args.json:
            _print_json(status)
        if status["state"] != "ready":
            _say(f"preload {status['state']}: {status.get('error')}")
            return EXIT_FAILED
        whisper = status.get("whisper") or {}
        _say(f"{whisper.get('id')} is loaded on {whisper.get('device')}")
        return EXIT_OK


# ----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelmgr",
        description="WhisperX Studio model manager: in this process, or a running server with --url",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", help="drive a running studio, e.g. http://127.0.0.1:7860 (MODELMGR_URL)")
    parser.add_argument("--token", help="its auth token (MODELMGR_AUTH_TOKEN)")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str, *, json_flag: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(run=name)
        if json_flag:
            p.add_argument("--json", action="store_true", help="print JSON on stdout")
        return p

    p = command("list", "every known model and its state", json_flag=True)
    p.add_argument("--downloaded", action="store_true")
    p = command("status", "one model's state", json_flag=True)
    p.add_argument("model")
    p = command("download", "download a model (and its alignment models)", json_flag=True)
    p.add_argument("model")
    p.add_argument("--languages", help="comma-separated, e.g. zh,ja: bring their alignment models")
    p.add_argument("--no-align", action="store_true")
    command("cancel", "cancel a download on the server (--url)").add_argument("model")
    command("delete", "remove a model's files").add_argument("model")
    command("verify", "re-hash a model's files against its manifest (in-process)").add_argument("model")
    p = command("preload", "load a model into the server's memory (--url)", json_flag=True)
    p.add_argument("model")
    p.add_argument("--language")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p = command("transcribe", "transcribe audio files into subtitles (downloads the model if needed)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--model", default="small")
    p.add_argument("--language", help="e.g. zh; detected when left out")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--task", default="transcribe", choices=("transcribe", "translate"))
    p.add_argument("--format", default="srt", help=f"comma-separated: {','.join(FORMATS)}")
    p.add_argument("--out", default=".", help="folder for <name>.<format> (default: here)")
    p.add_argument("--no-align", action="store_true", help="segment times only, no word alignment")
    p.add_argument(
        "--vad",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="skip silence with the Silero VAD (default: on; --no-vad decodes every second)",
    )
    p.add_argument(
        "--batch-size", type=int, help="batched inference (default: 16 on CUDA, 8 on CPU, as measured)"
    )
    p.add_argument("--prompt", help="initial prompt: names, spellings, style")
    p.add_argument(
        "--diarize", action="store_true", help="say who spoke when (pyannote; a gated model: HF_TOKEN)"
    )
    p.add_argument("--num-speakers", type=int, metavar="N", help="with --diarize: exactly N speakers")
    p.add_argument("--min-speakers", type=int, metavar="N", help="with --diarize: at least N speakers")
    p.add_argument("--max-speakers", type=int, metavar="N", help="with --diarize: at most N speakers")
    p.add_argument(
        "--diarize-model", metavar="ID", help="with --diarize: the pipeline (default: MODELMGR_DIARIZE_MODEL)"
    )
    sub.add_parser("worker", help="distributed mode: run transcription jobs from Redis (see `worker --help`)")
    return parser


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:  # distributed mode: a Celery worker (imports Celery only here)
        from modelmgr.distributed.worker import main as worker_main

        return worker_main(argv[1:])
    args = build_parser().parse_args(argv)
    overrides: dict[str, Any] = {"url": args.url} if args.url else {}
    if args.token:
        overrides["auth_token"] = SecretStr(args.token)
    settings = settings.model_copy(update=overrides) if settings else Settings(**overrides)
    backend: Local | Remote | None = None
    try:
        backend = Remote(settings) if settings.url else Local(settings)
        return getattr(backend, args.run)(args)
    except (InvalidInput, ModelNotFound) as exc:
        _say(f"error: {exc.message}")
        return EXIT_BAD_INPUT
    except NotDownloading as exc:
        _say(f"error: {exc.message}")
        return EXIT_FAILED
    except ModelMgrError as exc:
        _say(f"error: {exc.message}")
        return EXIT_FAILED
    except ServerError as exc:
        _say(f"error: {exc.message} ({exc.code}, HTTP {exc.status})")
        if exc.status in (401, 403) and exc.code not in HUB_REFUSALS:  # the studio refused us
            return EXIT_UNREACHABLE
        return EXIT_BAD_INPUT if exc.status in (400, 404, 413, 422) else EXIT_FAILED
    except ServerUnreachable as exc:
        _say(f"error: {exc}")
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        if backend is not None:
            backend.close()


def run() -> None:
    """Console script ``modelmgr``."""
    sys.exit(main())
