# microbox's stateful Python kernel (languages/prestart.go): E2B's code
# interpreter (api/e2b_code.go) and MCP's exec run cells in it.
#
# One process per code context, started in the session (or pre-started in
# the language's session snapshot: --preload names modules imported before
# it says it is ready) and fed cells on stdin, one JSON object a line:
# {"id", "code", "env"}, or {"id", "op": "reseed"}. It answers on its
# stdout, one JSON object a line, each with the cell's id: "stdout" and
# "stderr" text as the cell prints it, "result" (the last expression's
# value as text, HTML when it has one; each open matplotlib figure as a
# PNG), "error" (name, value, traceback), "number_of_executions", and
# "done" last; "ready", with no id, once it has started. What programs the
# cell starts write to the process's own stdout and stderr goes to its
# stderr, which the host passes on as the cell's stderr. Variables,
# imports and the working directory persist from cell to cell.

import ast
import base64
import io
import json
import linecache
import os
import sys
import traceback

_proto = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
os.dup2(2, 1)  # a child's stdout must not mix into the protocol
_cell = {"id": None}


def _emit(msg):
    msg["id"] = _cell["id"]
    _proto.write(json.dumps(msg) + "\n")
    _proto.flush()


class _Stream(io.TextIOBase):
    def __init__(self, name):
        self._name = name

    def write(self, s):
        if s:
            _emit({"type": self._name, "text": str(s)})
        return len(s)

    def writable(self):
        return True

    def isatty(self):
        return False

    def fileno(self):
        return 2


sys.stdout = _Stream("stdout")
sys.stderr = _Stream("stderr")
os.environ.setdefault("MPLBACKEND", "Agg")
# The image's matplotlib font cache (python3-data), where matplotlib may
# write: it rebuilds the cache, for seconds, in a directory it cannot.
_MPL = "/usr/local/share/matplotlib"
if "MPLCONFIGDIR" not in os.environ and os.path.isdir(_MPL):
    try:
        import shutil

        shutil.copytree(_MPL, "/tmp/.matplotlib", dirs_exist_ok=True)
        os.environ["MPLCONFIGDIR"] = "/tmp/.matplotlib"
    except OSError:
        pass


def _reseed():
    # Clones of one snapshot share the random state: draw it afresh from
    # the guest's generator, which the host reseeded at the resume.
    import random

    random.seed()
    np = sys.modules.get("numpy")
    if np is not None:
        try:
            np.random.seed(np.frombuffer(os.urandom(32), dtype=np.uint32))
        except Exception as e:
            sys.__stderr__.write("numpy.random not reseeded: %s\n" % e)


def _preload():
    # Imported into sys.modules, not into the cells' namespace: a cell's
    # own import then costs nothing.
    if "--preload" not in sys.argv:
        return
    names = sys.argv[sys.argv.index("--preload") + 1]
    for name in filter(None, names.split(",")):
        try:
            __import__(name)
        except Exception as e:
            sys.__stderr__.write("preload of %s failed: %s\n" % (name, e))


def _figures():
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    for num in plt.get_fignums():
        fig = plt.figure(num)
        buf = io.BytesIO()
        try:
            fig.savefig(buf, format="png", bbox_inches="tight")
        except Exception as e:  # a figure that cannot be drawn is an error of its own
            _emit({"type": "stderr", "text": "could not render figure %d: %s\n" % (num, e)})
            continue
        _emit({"type": "result", "is_main_result": False, "png": base64.b64encode(buf.getvalue()).decode(),
               "text": "<Figure size %dx%d with %d Axes>" % (fig.get_figwidth() * fig.dpi,
                                                             fig.get_figheight() * fig.dpi, len(fig.axes))})
    plt.close("all")


def _result(value):
    out = {"type": "result", "is_main_result": True, "text": repr(value)}
    for attr, key in (("_repr_html_", "html"), ("_repr_markdown_", "markdown"), ("_repr_latex_", "latex"),
                      ("_repr_svg_", "svg"), ("_repr_json_", "json")):
        fn = getattr(value, attr, None)
        if callable(fn):
            try:
                v = fn()
            except Exception:
                v = None
            if v is not None:
                out[key] = v
    png = getattr(value, "_repr_png_", None)
    if callable(png):
        try:
            data = png()
            if data:
                out["png"] = base64.b64encode(data).decode()
        except Exception:
            pass
    _emit(out)


def main():
    ns = {"__name__": "__main__", "__builtins__": __builtins__}
    count = 0
    stdin = sys.stdin.buffer
    _preload()
    _emit({"type": "ready"})
    while True:
        line = stdin.readline()
        if not line:
            return
        try:
            req = json.loads(line)
        except ValueError:
            continue
        _cell["id"] = req.get("id")
        if req.get("op") == "reseed":
            _reseed()
            _emit({"type": "done"})
            continue
        count += 1
        _emit({"type": "start"})
        saved = {}
        for k, v in (req.get("env") or {}).items():
            saved[k] = os.environ.get(k)
            os.environ[k] = v
        try:
            code = req.get("code") or ""
            # Its lines, for tracebacks: linecache keeps an entry without
            # a file's mtime as it is.
            name = "<cell %d>" % count
            linecache.cache[name] = (len(code), None, code.splitlines(True), name)
            tree = ast.parse(code, name, "exec")
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            exec(compile(tree, name, "exec"), ns)
            value = None
            if last is not None:
                value = eval(compile(last, name, "eval"), ns)
            _figures()
            if value is not None:
                ns["_"] = value
                if not (type(value).__module__.startswith("matplotlib") or
                        isinstance(value, list) and value and type(value[0]).__module__.startswith("matplotlib")):
                    _result(value)
        except BaseException as e:  # KeyboardInterrupt and SystemExit too: the kernel lives on
            try:
                _figures()
            except Exception:
                pass
            tb = traceback.format_exception(type(e), e, e.__traceback__)
            # Our own frame is not the user's.
            tb = [t for t in tb if __file__ not in t]
            _emit({"type": "error", "name": type(e).__name__, "value": str(e), "traceback": "".join(tb)})
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            try:
                sys.stdout.flush()
            except Exception:
                pass
        _emit({"type": "number_of_executions", "execution_count": count})
        _emit({"type": "done"})


main()
