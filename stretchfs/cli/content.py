"""`stretchfs login|logout|upload|download|purchase|detail`: the public API from a terminal.

Where the prism and the credentials come from, first found wins: the flags
(`--url`, `--user`, `--password`), the environment (`STRETCHFS_URL`,
`STRETCHFS_USER`, `STRETCHFS_PASSWORD`), the session `stretchfs login` saved
(`session.json`), then `client.toml` — both in `$XDG_CONFIG_HOME/stretchfs/`
(`~/.config/stretchfs/`).  Progress bars go to stderr on a terminal only;
`--json` prints machine-readable results on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

from stretchfs.client import Client, Progress, StretchFSError
from stretchfs.exitcodes import EX_USAGE

if TYPE_CHECKING:
    import ssl

T = TypeVar("T")

EX_FAILED = 1
ENV = {"url": "STRETCHFS_URL", "username": "STRETCHFS_USER", "password": "STRETCHFS_PASSWORD"}


def config_dir() -> str:
    """Where the client keeps its session and config (created 0700 on first write)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"),
                                                             ".config")
    return os.path.join(base, "stretchfs")


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _read_toml(path: str) -> dict[str, Any]:
    if not os.path.exists(path):
        return {}
    import tomllib

    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def save_session(url: str, username: str, token: str) -> str:
    """Write session.json with mode 0600 (its folder 0700); returns its path."""
    folder = config_dir()
    os.makedirs(folder, mode=0o700, exist_ok=True)
    path = os.path.join(folder, "session.json")
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"url": url, "username": username, "token": token}, handle)
    os.replace(path + ".tmp", path)
    return path


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    """url, username, password and a saved token, by the precedence in the module doc."""
    saved = _read_json(os.path.join(config_dir(), "session.json"))
    configured = _read_toml(os.path.join(config_dir(), "client.toml"))
    found: dict[str, Any] = {}
    for name in ("url", "username", "password"):
        found[name] = (getattr(args, name, None) or os.environ.get(ENV[name])
                       or saved.get(name) or configured.get(name))
    same = saved.get("url") == found["url"] and saved.get("username") in (None,
                                                                         found["username"])
    found["token"] = saved.get("token") if same and not getattr(args, "password", None) \
        else None
    return found


def open_client(args: argparse.Namespace, token: str | None = None,
                ssl_context: ssl.SSLContext | None = None) -> Client:
    """A Client from the resolved settings (`token` overrides the saved session)."""
    found = resolve(args)
    if not found["url"]:
        raise SystemExit("stretchfs: no prism URL: give --url, set STRETCHFS_URL or run "
                         "`stretchfs login --url URL`")
    return Client(found["url"], found["username"], found["password"],
                  token=token or found["token"], ca_file=args.ca_file,
                  ssl_context=ssl_context, timeout=args.timeout)


def _add_common(parser: argparse.ArgumentParser, ca_file: bool = True) -> None:
    parser.add_argument("--url", help="the prism's base URL (or $STRETCHFS_URL)")
    parser.add_argument("--user", dest="username", help="user name (or $STRETCHFS_USER)")
    parser.add_argument("--password", help="password (or $STRETCHFS_PASSWORD; prefer those)")
    if ca_file:
        parser.add_argument("--ca-file", help="PEM bundle to trust for the prism's certificate")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds a call may go without progress (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")


def add_parsers(subparsers: Any, prune: Callable[[argparse.Namespace], int] | None = None,
                add_prune_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
                *, only: str | None = None) -> None:
    """Register the client commands (`only` one of them, when given); `purchase prune`
    stays the operator's command, so `purchase` needs `prune` and its arguments."""
    if only is not None and only != "purchase":
        {"login": _add_login, "logout": _add_logout, "upload": _add_upload,
         "download": _add_download, "detail": _add_detail}[only](subparsers)
        return
    assert prune is not None and add_prune_arguments is not None
    if only == "purchase":
        _add_purchase(subparsers, prune, add_prune_arguments)
        return
    for add in (_add_login, _add_logout, _add_upload, _add_download):
        add(subparsers)
    _add_purchase(subparsers, prune, add_prune_arguments)
    _add_detail(subparsers)


def _add_login(subparsers: Any) -> None:
    login = subparsers.add_parser("login", help="log in and keep the session for later commands")
    _add_common(login)
    login.set_defaults(func=run_login)


def _add_logout(subparsers: Any) -> None:
    logout = subparsers.add_parser("logout", help="end the saved session")
    _add_common(logout)
    logout.set_defaults(func=run_logout)


def _add_upload(subparsers: Any) -> None:
    upload = subparsers.add_parser("upload", help="upload files (in parallel with --jobs)")
    upload.add_argument("files", nargs="+", help="files to upload")
    upload.add_argument("--jobs", "-j", type=int, default=4,
                        help="uploads at once (default %(default)s)")
    _add_common(upload)
    upload.set_defaults(func=run_upload)


def _add_download(subparsers: Any) -> None:
    download = subparsers.add_parser("download", help="download a link (resumes)")
    download.add_argument("link", help="a download URL, or TOKEN/NAME on the prism")
    download.add_argument("--output", "-o", required=True, help="file to write")
    download.add_argument("--restart", action="store_true",
                          help="start over instead of resuming a partial file")
    _add_common(download)
    download.set_defaults(func=run_download)


def _add_purchase(subparsers: Any, prune: Callable[[argparse.Namespace], int],
                  add_prune_arguments: Callable[[argparse.ArgumentParser], None]) -> None:
    purchase = subparsers.add_parser(
        "purchase", help="buy a download link for HASH (`purchase prune`: operators)")
    purchase.add_argument("hash", help="the content's SHA1, or `prune` to remove expired "
                                       "purchases through the master")
    purchase.add_argument("--ext", help="extension of the link (default: the stored one)")
    purchase.add_argument("--life", type=float, help="seconds the link works")
    purchase.add_argument("--referrer", action="append", default=[],
                          help="allowed referrer host (repeat for several)")
    purchase.add_argument("--name", default="",
                          help="file name in the printed link (default HASH.EXT)")
    _add_common(purchase, ca_file=False)
    add_prune_arguments(purchase)  # its --ca-file serves the prism and, for prune, the master
    purchase.set_defaults(func=lambda args: prune(args) if args.hash == "prune"
                          else run_purchase(args))


def _add_detail(subparsers: Any) -> None:
    detail = subparsers.add_parser("detail", help="where the cluster holds each hash")
    detail.add_argument("hashes", nargs="+", help="SHA1s to look up")
    _add_common(detail)
    detail.set_defaults(func=run_detail)


def _failed(error: StretchFSError) -> int:
    sys.stderr.write("stretchfs: {}\n".format(error.message))
    return EX_FAILED


def _bar(total: int | None, description: str) -> Any:
    """A byte progress bar on stderr when it is a terminal, else None (tqdm not loaded)."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    # A thread lock, not tqdm's default multiprocessing one (0.1 s to create).
    tqdm.set_lock(threading.RLock())
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except (OSError, ValueError):
        size = os.terminal_size((0, 0))
    # A terminal that reports no size (some pseudo-terminals) is taken as 80 x 24:
    # tqdm draws nothing on a zero-sized one.
    sized = size.columns > 0 and size.lines > 0
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                desc=description, file=sys.stderr, leave=True,
                ncols=None if sized else 80, nrows=None if sized else 24)


def run_login(args: argparse.Namespace) -> int:
    """Log in (asking for the password on a terminal) and save the session 0600."""
    found = resolve(args)
    if not found["url"] or not found["username"]:
        sys.stderr.write("stretchfs login: give --url and --user (or the environment)\n")
        return EX_USAGE
    password = found["password"]
    if password is None:
        if not sys.stdin.isatty():
            sys.stderr.write("stretchfs login: no password (--password or "
                             "$STRETCHFS_PASSWORD)\n")
            return EX_USAGE
        import getpass

        password = getpass.getpass("password for {}: ".format(found["username"]))
    try:
        with Client(found["url"], found["username"], password, ca_file=args.ca_file,
                    timeout=args.timeout) as client:
            session = client.login()
    except StretchFSError as exc:
        return _failed(exc)
    path = save_session(found["url"], found["username"], session.token)
    print(json.dumps({"session": path}) if args.json else "logged in; session in " + path)
    return 0


def run_logout(args: argparse.Namespace) -> int:
    """End the saved session on the cluster and forget it."""
    path = os.path.join(config_dir(), "session.json")
    try:
        with open_client(args) as client:
            if client.session is not None:
                client.logout()
    except StretchFSError as exc:
        return _failed(exc)
    finally:
        if os.path.exists(path):
            os.unlink(path)
    print("logged out")
    return 0


def _adding_to(bar: Any) -> Progress | None:
    """A progress callback adding one upload's bytes to the shared bar (None without one)."""
    if bar is None:
        return None
    sent = [0]

    def progress(done: int, _total: int | None) -> None:
        bar.update(done - sent[0])
        sent[0] = done

    return progress


def in_parallel(items: list[str], jobs: int, work: Callable[[str], T]
                ) -> Iterator[tuple[int, T | StretchFSError]]:
    """(index, result or StretchFSError) of `work(item)` as each ends, `jobs` at once.

    Plain threads pulling from one list (concurrent.futures would load
    logging and more at start-up); any other exception ends the run.
    """
    pending = iter(range(len(items)))
    lock = threading.Lock()
    ended: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()

    def worker() -> None:
        while True:
            with lock:
                index = next(pending, None)
            if index is None:
                return
            try:
                ended.put((index, work(items[index])))
            except BaseException as exc:  # handed to the caller's thread
                ended.put((index, exc))

    threads = [threading.Thread(target=worker, daemon=True)
               for _ in range(max(1, min(jobs, len(items))))]
    for thread in threads:
        thread.start()
    for _ in items:
        index, outcome = ended.get()
        if isinstance(outcome, BaseException) and not isinstance(outcome, StretchFSError):
            raise outcome
        yield index, outcome
    for thread in threads:
        thread.join()


def run_upload(args: argparse.Namespace) -> int:
    """Upload every file, `--jobs` at once, with one progress bar over all bytes."""
    missing = [path for path in args.files if not os.path.isfile(path)]
    if missing:
        sys.stderr.write("stretchfs upload: not a file: {}\n".format(", ".join(missing)))
        return EX_USAGE
    total = sum(os.path.getsize(path) for path in args.files)
    trust: ssl.SSLContext | None = None
    if str(resolve(args)["url"] or "").startswith("https:"):
        from stretchfs.client.tls import Trust

        trust = Trust(args.ca_file)  # one TLS context for every worker's client
    with open_client(args, ssl_context=trust) as first:
        try:
            token = first.session.token if first.session else first.login().token
        except StretchFSError as exc:
            return _failed(exc)
    bar = _bar(total, "upload")
    results: dict[str, Any] = {}
    failures = 0
    local = threading.local()
    clients: list[Client] = []

    def one(path: str) -> Any:
        if not hasattr(local, "client"):  # one client (and connection) per worker
            local.client = open_client(args, token=token, ssl_context=trust)
            clients.append(local.client)
        return asdict(local.client.upload(path, progress=_adding_to(bar)))

    for index, outcome in in_parallel(args.files, args.jobs, one):
        path = args.files[index]
        if isinstance(outcome, StretchFSError):
            failures += 1
            results[path] = {"error": outcome.message}
            message = "stretchfs upload: {}: {}".format(path, outcome.message)
            if bar is None:
                sys.stderr.write(message + "\n")
            else:
                bar.write(message, file=sys.stderr)
        else:
            results[path] = outcome
    if bar is not None:
        bar.close()
    for client in clients:
        client.close()
    if args.json:
        print(json.dumps([dict(results[path], path=path) for path in args.files]))
    else:
        for path in args.files:
            row = results[path]
            if "error" not in row:
                print("{}  {}  {} bytes  {} copies".format(row["hash"], path, row["size"],
                                                           row["copies"]))
    return EX_FAILED if failures else 0


def run_download(args: argparse.Namespace) -> int:
    """Download a link to `--output`, resuming what is already there."""
    with open_client(args) as client:
        link = args.link if "://" in args.link else "{}/{}".format(client.url,
                                                                   args.link.lstrip("/"))
        bar = _bar(None, "download")

        def progress(done: int, total: int | None) -> None:
            if total is not None and bar.total != total:
                bar.reset(total=total)
            bar.n = done
            bar.refresh()

        try:
            result = client.download(link, args.output, resume=not args.restart,
                                     progress=None if bar is None else progress)
        except StretchFSError as exc:
            return _failed(exc)
        finally:
            if bar is not None:
                bar.close()
    print(json.dumps(asdict(result)) if args.json else "{}  {}  {} bytes".format(
        result.sha1, result.path, result.size))
    return 0


def run_purchase(args: argparse.Namespace) -> int:
    """Buy a link and print its token and URL."""
    try:
        with open_client(args) as client:
            ext = args.ext or client.detail(args.hash).ext
            bought = client.purchase(args.hash, ext, life=args.life, referrer=args.referrer)
            link = client.download_url(bought, args.name or "{}.{}".format(args.hash, ext))
    except StretchFSError as exc:
        return _failed(exc)
    if args.json:
        print(json.dumps(dict(asdict(bought), url=link)))
    else:
        print("token {}\nexpires {:.0f}\n{}".format(bought.token, bought.expires, link))
    return 0


def run_detail(args: argparse.Namespace) -> int:
    """Print what the cluster knows of each hash (unknown ones say so)."""
    try:
        with open_client(args) as client:
            records = client.exists(args.hashes)
    except StretchFSError as exc:
        return _failed(exc)
    if args.json:
        print(json.dumps({sha1: asdict(record) for sha1, record in records.items()}))
        return 0
    for sha1 in args.hashes:
        record = records.get(sha1)
        if record is None or not record.exists:
            print("{}  not found".format(sha1))
        else:
            print("{}  {}  {} bytes  {} copies  {}".format(
                sha1, record.ext, record.size, record.count, ",".join(record.stores)))
    return 0 if all(r.exists for r in records.values()) else EX_FAILED
