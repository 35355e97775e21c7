"""The host's config file (/etc/reconciler/config.yaml): optional, every key has a default."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from reconciler.adapters import files
from reconciler.core import defaults
from reconciler.core.errors import PermanentError
from reconciler.core.record import Record

DEFAULT_PATH = Path(defaults.CONFIG_FILE)


@dataclass(frozen=True, eq=False, repr=False)
class Config(Record):
    connect: str = defaults.CONNECT
    instance: str = defaults.INSTANCE  # several reconcilers on one host: each owns its own
    manifestDir: str = defaults.MANIFEST_DIR
    stateDir: str = defaults.STATE_DIR
    maxDestroy: int = defaults.MAX_DESTROY
    maxMoves: int = defaults.MAX_MOVES  # many hosts: moves one run starts; the rest wait
    prune: str = "auto"  # auto | confirm | off: what happens to a VM whose manifest is gone
    parallel: int = defaults.PARALLEL
    storageRoots: tuple[str, ...] = field(default=defaults.STORAGE_ROOTS)
    # The webhook (``adapters.webhook``): {url: http(s)://..., secret: optional HMAC key}.
    notify: Notify | None = None
    # Many hosts: this host's name among the repository's Host manifests (default: the
    # hostname libvirt reports for the connection).
    host: str | None = None


@dataclass(frozen=True, eq=False, repr=False)
class Notify(Record):
    url: str
    secret: str = ""
    timeout: float = 5.0  # seconds per delivery


def load(path: Path | None) -> Config:
    """The config at ``path``; a missing default file is fine, a missing named one is not."""
    target = path or DEFAULT_PATH
    if not target.exists():
        if path is not None:
            raise PermanentError(f"{path}: config file not found")
        return Config()
    try:  # a regular file of at most 1 MiB: a FIFO or device there must not hang or flood
        text = files.read_manifest(target, limit=1 << 20).decode()
    except files.Unreadable as exc:
        raise PermanentError(f"{target}: cannot read config: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise PermanentError(f"{target}: cannot read config: not UTF-8 ({exc})") from exc
    data = _parse(text, target) if _has_content(text) else {}
    if not isinstance(data, dict):
        raise PermanentError(f"{target}: the config must be a mapping")
    known = {f.name for f in fields(Config)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise PermanentError(f"{target}: unknown key(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}")
    if data.get("prune") is False:  # YAML 1.1 reads an unquoted `prune: off` as false
        data["prune"] = "off"
    problems = [f"{key} must be {what}" for key, what, ok in (
        ("connect", "a libvirt URI (a string)", isinstance(data.get("connect", ""), str)),
        ("instance", "a name (a string)", isinstance(data.get("instance", ""), str)),
        ("manifestDir", "a path (a string)", isinstance(data.get("manifestDir", ""), str)),
        ("stateDir", "a path (a string)", isinstance(data.get("stateDir", ""), str)),
        ("host", "a host name (a string)", isinstance(data.get("host", ""), str)
         and bool(data.get("host", "x"))),
        ("maxDestroy", "a whole number >= 0", _count(data.get("maxDestroy", 0), 0)),
        ("maxMoves", "a whole number >= 0", _count(data.get("maxMoves", 0), 0)),
        ("prune", "one of auto, confirm, off", data.get("prune", "auto") in (
            "auto", "confirm", "off")),
        ("parallel", "a whole number >= 1", _count(data.get("parallel", 1), 1)),
        ("storageRoots", "a list of absolute paths",
         isinstance(data.get("storageRoots", []), list)
         and all(isinstance(r, str) and r.startswith("/") and r.rstrip("/")
                 for r in data.get("storageRoots", []))),
    ) if not ok]
    notify = data.get("notify")
    if notify is not None:
        if (not isinstance(notify, dict) or not isinstance(notify.get("url"), str)
                or not notify["url"].startswith(("http://", "https://"))
                or not isinstance(notify.get("secret", ""), str)
                or set(notify) - {"url", "secret", "timeout"}
                or not isinstance(notify.get("timeout", 5), int | float)
                or isinstance(notify.get("timeout", 5), bool)
                or not 0 < notify.get("timeout", 5) <= 60):
            problems.append("notify must be {url: http(s)://..., secret: optional text, "
                            "timeout: seconds (1-60)}")
        else:
            data["notify"] = Notify(notify["url"], notify.get("secret", ""),
                                    float(notify.get("timeout", 5)))
    if problems:
        raise PermanentError(f"{target}: {'; '.join(problems)}")
    if "storageRoots" in data:
        data["storageRoots"] = tuple(data["storageRoots"])
    return Config(**data)


def _has_content(text: str) -> bool:
    """Anything but blank lines and comments (those need no YAML parser, a slow import)."""
    return any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines())


def _parse(text: str, target: Path) -> object:
    import yaml

    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise PermanentError(f"{target}: cannot read config: {exc}") from exc


def _count(value: object, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least
