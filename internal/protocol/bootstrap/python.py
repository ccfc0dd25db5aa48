"""Python bootstrap for sandbox file handlers (docs/handler-protocol.md).

The engine runs `python3 python.py` with the protocol socket as fd 3
(SANDBOX_IPC_FD) and the plugin root mounted at /plugin.

Contract (kept in sync with internal/protocol/doc.go):
  - sends ready first, then waits for run;
  - resolves handler.file as <file>, <file>.py under the plugin root
    (handler.root, else $SANDBOX_PLUGIN_ROOT, else /plugin); a file outside the
    root, or a missing file or export, is HANDLER_NOT_FOUND;
  - calls the export (default "run") as fn(input, ctx), or fn(ctx, argv, flags)
    for a cli command; a coroutine is run with asyncio.run;
  - ctx: the context fields (as attributes and ctx["key"]), ctx.log(level,
    message, meta), ctx.progress(percent, message), ctx.cancelled (a
    threading.Event set on cancel or SIGTERM, created on first use);
  - print() and other writes to sys.stdout / sys.stderr become log lines
    (info / error);
  - returns: 0 -> ok with data null; any other int or float (not bool) ->
    HANDLER_EXIT_CODE with exitCode, and the process exits with that code;
    sys.exit(n) likewise; anything else -> ok with the value as data;
  - an exception keeps a string `code` attribute (else HANDLER_ERROR) and its
    traceback as stack; MemoryError is MEMORY_LIMIT (status memory_limit);
  - after the result: flush and exit 0.

Start-up is on every run's critical path, so the bootstrap imports only
modules the interpreter already has loaded (sys, os) or builtin C modules:
the json, socket, signal and threading packages would pull in re, enum,
collections and functools (~8 ms together); traceback and asyncio are
imported only when needed. site stays on: handlers may import packages
installed in the system's site-packages.
"""

import os
import sys

import _thread

try:
    import _signal as _sig  # the signal module imports enum
except ImportError:  # not CPython
    import signal as _sig

LEVELS = ("debug", "info", "warn", "error")


def _codec():
    """Return (loads, dumps) with the json module's behaviour.

    The json package imports re (and with it enum, functools, collections):
    ~5 ms of a ~10 ms interpreter start. Its C accelerator _json does the
    work by itself; the json package is the fallback wherever _json is
    missing or does not behave as expected.
    """
    try:
        import _json

        consts = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}

        class Cfg:  # the attributes the C scanner reads from a JSONDecoder
            strict = True
            object_hook = None
            object_pairs_hook = None
            parse_float = float
            parse_int = int
            parse_constant = staticmethod(consts.__getitem__)

        scan = _json.make_scanner(Cfg())

        def default(o):
            raise TypeError("Object of type %s is not JSON serializable" % o.__class__.__name__)

        def dumps(obj):
            # As json.dumps(obj, ensure_ascii=False, allow_nan=False,
            # separators=(",", ":")) does it (the same C encoder).
            enc = _json.make_encoder({}, default, _json.encode_basestring, None, ":", ",", False, False, False)
            return "".join(enc(obj, 0))

        ws = " \t\n\r"

        def loads(b):
            s = b.decode("utf-8") if isinstance(b, (bytes, bytearray)) else b
            i = len(s) - len(s.lstrip(ws))
            try:
                obj, end = scan(s, i)
            except StopIteration:
                raise ValueError("expecting a JSON value") from None
            if s[end:].strip(ws):
                raise ValueError("extra data after the JSON value")
            return obj

        if loads(b' {"a":[1,"\\u00e9",null,true,1.5,-2e3]} ') != {"a": [1, "\u00e9", None, True, 1.5, -2000.0]}:
            raise ImportError("_json scanner")
        if dumps({"a": [1, "\u00e9\n", None, True, 1.5]}) != '{"a":[1,"\u00e9\\n",null,true,1.5]}':
            raise ImportError("_json encoder")
        return loads, dumps
    except Exception:
        import json

        def dumps(obj):
            return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))

        return json.loads, dumps


_loads, _dumps = _codec()

_fd = int(os.environ.get("SANDBOX_IPC_FD", "3"))
os.set_inheritable(_fd, False)  # a subprocess of the handler must not speak for it
_wlock = _thread.allocate_lock()
_max_bytes = 16 << 20
_result_sent = False
_real_stderr = sys.__stderr__


class _Cancel:
    """The cancellation flag; ctx.cancelled is a threading.Event made on
    first use (threading costs ~2 ms to import, most handlers never ask)."""

    def __init__(self):
        self._lock = _thread.allocate_lock()
        self._set = False
        self._event = None

    def set(self):
        with self._lock:
            self._set = True
            ev = self._event
        if ev is not None:
            ev.set()

    def event(self):
        with self._lock:
            if self._event is None:
                import threading

                self._event = threading.Event()
                if self._set:
                    self._event.set()
            return self._event


_cancelled = _Cancel()


def _send_line(line):
    data = memoryview(line.encode("utf-8", "surrogatepass") + b"\n")
    with _wlock:
        while data:
            data = data[os.write(_fd, data):]


def _send_log(level, message, meta=None):
    if _result_sent:
        return  # nothing may follow the result
    msg = {"type": "log", "level": level, "message": str(message)}
    if meta is not None:
        msg["meta"] = meta
    try:
        line = _dumps(msg)
    except (TypeError, ValueError) as e:
        msg["meta"] = {"metaError": "meta is not JSON-serializable: %s" % e}
        line = _dumps(msg)
    if len(line.encode("utf-8", "surrogatepass")) + 1 > _max_bytes:
        # Cut the text so that even fully escaped it fits the parent's limit.
        msg = {"type": "log", "level": level, "message": msg["message"][: _max_bytes // 8] + " [truncated]"}
        msg.pop("meta", None)
        line = _dumps(msg)
    _send_line(line)


class _LogStream:
    """A text stream turning complete lines into log messages."""

    def __init__(self, level):
        self._level = level
        self._buf = ""
        self._lock = _thread.allocate_lock()

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not %s" % type(s).__name__)
        with self._lock:
            self._buf += s
            *lines, self._buf = self._buf.split("\n")
        for line in lines:
            _send_log(self._level, line)
        return len(s)

    def flush(self):
        with self._lock:
            rest, self._buf = self._buf, ""
        if rest:
            _send_log(self._level, rest)

    def isatty(self):
        return False

    def writable(self):
        return True

    def fileno(self):
        raise OSError("log stream has no file descriptor")

    @property
    def encoding(self):
        return "utf-8"


def _finish(result, code=0):
    global _result_sent
    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
        except Exception:
            pass
    if _result_sent:
        return
    msg = dict(result, type="result")
    try:
        line = _dumps(msg)
    except (TypeError, ValueError) as e:
        line = _dumps({"type": "result", "ok": False, "error": {
            "code": "HANDLER_ERROR", "message": "result is not JSON-serializable: %s" % e, "stack": ""}})
    size = len(line.encode("utf-8", "surrogatepass")) + 1
    if size > _max_bytes:
        line = _dumps({"type": "result", "ok": False, "error": {
            "code": "HANDLER_ERROR",
            "message": "result is %d bytes, over the protocol limit of %d" % (size, _max_bytes), "stack": ""}})
    _result_sent = True
    try:
        _send_line(line)
    except OSError:
        os._exit(1)
    _exit(code)


def _exit(code):
    # A normal exit runs the handler's atexit hooks and flushes its files, but
    # waits for its non-daemon threads: give those a moment, then leave anyway.
    def later():
        import time

        time.sleep(1.0)
        os._exit(code)

    _thread.start_new_thread(later, ())
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    sys.exit(code)


def _error_result(exc, fallback):
    import traceback

    code = getattr(exc, "code", None)
    if not isinstance(code, str) or not code:
        code = fallback
    return {"ok": False, "error": {
        "code": code,
        "message": str(exc) or type(exc).__name__,
        "stack": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }}


def _memory_result(exc):
    # MEMORY_LIMIT whatever the error says: the parent maps it to memory_limit.
    r = _error_result(exc, "MEMORY_LIMIT")
    r["error"]["code"] = "MEMORY_LIMIT"
    return r


def _not_found(message):
    _finish({"ok": False, "error": {"code": "HANDLER_NOT_FOUND", "message": message, "stack": ""}})


class Context:
    """The ctx handed to a handler: context fields plus log, progress, cancelled."""

    def __init__(self, fields):
        # The protocol's own members win over context fields of the same name.
        self.__dict__.update({k: v for k, v in fields.items() if not hasattr(Context, k)})
        self._fields = fields

    @property
    def cancelled(self):
        return _cancelled.event()

    def __getitem__(self, key):
        return self._fields[key]

    def get(self, key, default=None):
        return self._fields.get(key, default)

    def log(self, level, message, meta=None):
        if level not in LEVELS:
            raise ValueError("ctx.log: level must be one of debug|info|warn|error, got %r" % (level,))
        if meta is not None and not isinstance(meta, dict):
            raise TypeError("ctx.log: meta must be a dict")
        _send_log(level, message, meta)

    def progress(self, percent, message=None):
        if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not (0 <= percent <= 100):
            raise ValueError("ctx.progress: percent must be a number in 0..100, got %r" % (percent,))
        if _result_sent:
            return
        msg = {"type": "progress", "percent": percent}
        if message is not None:
            msg["message"] = str(message)[: _max_bytes // 8]
        _send_line(_dumps(msg))


def _resolve(root, file):
    if not isinstance(file, str) or not file:
        return None
    base = os.path.realpath(root)
    for rel in (file, file + ".py"):
        p = os.path.normpath(os.path.join(base, rel))
        if p != base and not p.startswith(base + os.sep):
            continue  # outside the root
        if os.path.isfile(p):
            return p
    return None


def _load(path):
    try:  # what importlib.util re-exports, without importing it (~1.5 ms)
        from _frozen_importlib import module_from_spec
        from _frozen_importlib_external import SourceFileLoader, spec_from_file_location
    except ImportError:
        from importlib.machinery import SourceFileLoader
        from importlib.util import module_from_spec, spec_from_file_location

    name = "sandbox_handler"
    loader = SourceFileLoader(name, path)
    spec = spec_from_file_location(name, path, loader=loader)
    module = module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, os.path.dirname(path))  # sibling imports, as for a script
    loader.exec_module(module)
    return module


def _call(fn, args):
    value = fn(*args)
    if hasattr(value, "__await__"):
        import asyncio

        async def wait():
            return await value

        value = asyncio.run(wait())
    return value


def _run(msg):
    global _max_bytes
    limit = msg.get("maxMessageBytes")
    if isinstance(limit, int) and limit > 0:
        _max_bytes = limit
    handler = msg.get("handler") or {}
    context = msg.get("context") if isinstance(msg.get("context"), dict) else {}
    root = handler.get("root") or os.environ.get("SANDBOX_PLUGIN_ROOT") or "/plugin"
    export = handler.get("export") or "run"
    path = _resolve(root, handler.get("file"))
    if path is None:
        return _not_found("handler file %s not found under the plugin root" % _dumps(handler.get("file")))
    try:
        module = _load(path)
    except MemoryError as e:
        return _finish(_memory_result(e))
    except BaseException as e:
        return _finish(_error_result(e, "HANDLER_ERROR"))
    fn = getattr(module, export, None)
    if not callable(fn):
        return _not_found("export %s is not a function in %s" % (_dumps(export), _dumps(handler.get("file"))))

    ctx = Context(context)
    ac = context.get("adapterContext") or {}
    meta = context.get("adapterMeta") or {}
    if isinstance(meta, dict) and meta.get("signature") == "command" and isinstance(ac, dict) and ac.get("type") == "cli":
        argv = ac.get("argv") if isinstance(ac.get("argv"), list) else []
        flags = ac.get("flags") if isinstance(ac.get("flags"), dict) else {}
        args = (ctx, argv, flags)
    else:
        args = (msg.get("input"), ctx)
    try:
        value = _call(fn, args)
    except MemoryError as e:
        return _finish(_memory_result(e))
    except SystemExit as e:
        value = 0 if e.code is None else e.code
        if not isinstance(value, int):
            _send_log("error", str(value))
            value = 1
    except BaseException as e:
        return _finish(_error_result(e, "HANDLER_ERROR"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value == 0:
            return _finish({"ok": True, "data": None})
        # The process exits with the code, as the tool it stands for would
        # (an exit status is 1..255; anything else exits 1).
        code = value if isinstance(value, int) and 1 <= value <= 255 else 1
        return _finish({"ok": False, "exitCode": code, "error": {
            "code": "HANDLER_EXIT_CODE", "message": "handler returned exit code %s" % value, "stack": ""}}, code)
    _finish({"ok": True, "data": value})


def _lines():
    """Yield the socket's lines until EOF; the pieces of a line are joined
    once it is complete (a run message may be megabytes)."""
    parts = []
    while True:
        try:
            chunk = os.read(_fd, 1 << 20)
        except OSError:
            return
        if not chunk:
            return
        start = 0
        while True:
            i = chunk.find(b"\n", start)
            if i < 0:
                break
            parts.append(chunk[start:i])
            line = parts[0] if len(parts) == 1 else b"".join(parts)
            parts = []
            start = i + 1
            yield line
        if start < len(chunk):
            parts.append(chunk[start:])


def _messages(lines):
    for raw in lines:
        try:
            msg = _loads(raw)
        except ValueError:
            continue  # the parent never sends garbage; ignore rather than die
        if isinstance(msg, dict):
            yield msg


def _reader(msgs):
    # After run only cancel means anything.
    for msg in msgs:
        if msg.get("type") == "cancel":
            _cancelled.set()


# SIGTERM is turned into cancellation on a thread of its own, never in the
# Python-level signal handler. That handler runs only on the main thread,
# between two bytecodes, which goes wrong twice while the handler waits on
# ctx.cancelled: if it runs while the main thread holds the Event's lock (or
# _Cancel's), set() deadlocks on it; and a signal that lands just before the
# main thread blocks in the wait's lock leaves that handler pending until the
# wait times out. Instead the C-level handler writes the signal number to a
# wakeup pipe (signal.set_wakeup_fd), whatever thread the kernel picked, and
# _signals sets the flag from there: a plain cross-thread Event.set().
_sigr = _sigw = -1


def _on_sigterm(*_):
    # Takes no lock (see above). The wakeup fd has already carried the
    # signal; this write covers a handler that moved the wakeup fd elsewhere
    # (asyncio's add_signal_handler does). A second byte is harmless.
    if _sigw < 0:  # a forked child of the handler: no _signals thread there
        _cancelled.set()
        return
    try:
        os.write(_sigw, bytes((_sig.SIGTERM,)))
    except OSError:
        pass


def _signals(r):
    while True:
        try:
            b = os.read(r, 512)
        except OSError:
            return
        if not b:
            return
        if _sig.SIGTERM in b:
            _cancelled.set()


def _forked():
    # A child forked by the handler must not cancel the run through the
    # inherited pipe; it keeps the handler's flag to itself, as before.
    global _sigr, _sigw
    try:
        _sig.set_wakeup_fd(-1)
    except (ValueError, AttributeError):
        pass
    for fd in (_sigr, _sigw):
        try:
            os.close(fd)
        except OSError:
            pass
    _sigr = _sigw = -1


def _watch_sigterm():
    global _sigr, _sigw
    _sigr, _sigw = os.pipe()  # not inherited by the handler's subprocesses
    os.set_blocking(_sigw, False)  # set_wakeup_fd wants it so
    try:
        _sig.set_wakeup_fd(_sigw, warn_on_full_buffer=False)
    except (ValueError, AttributeError, TypeError):
        pass  # _on_sigterm still writes to the pipe, later
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_forked)
    _thread.start_new_thread(_signals, (_sigr,))
    _sig.signal(_sig.SIGTERM, _on_sigterm)


def main():
    _watch_sigterm()
    _send_line(_dumps({"type": "ready"}))
    # The run message is read on the main thread; a reader thread then
    # watches for cancel while the handler runs.
    msgs = _messages(_lines())
    run = None
    for msg in msgs:
        if msg.get("type") == "cancel":
            _cancelled.set()
        elif msg.get("type") == "run":
            run = msg
            break
    if run is None:
        os._exit(1)  # the parent is gone
    _thread.start_new_thread(_reader, (msgs,))
    sys.stdout = _LogStream("info")
    sys.stderr = _LogStream("error")
    _run(run)
    _finish({"ok": False, "error": {"code": "HANDLER_ERROR", "message": "bootstrap ended without a result", "stack": ""}})


if __name__ == "__main__":
    main()
