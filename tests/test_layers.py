"""The shape of the package: a sans-I/O core that imports no I/O, layers whose imports point only downward, no circle."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parent.parent / "wsgi_ws"

#: Each module's layer, lowest first; a module may import only from its own layer or below.
LAYERS = {
    "protocol": 0,
    "per_process": 0,
    "metrics": 1,
    "exceptions": 1,
    "options": 2,
    "connection": 3,
    "hub": 4,  # below the server glue: the per-IP limits count across workers in the hub's Redis
    "integrations": 5,
    "testing": 5,
    "server_settings": 5,  # the server's defaults and checks: gunicorn.conf.py and the command line read them
    "worker": 6,  # the short public paths of integrations
    "middleware": 6,
    "flask_ext": 6,
    "prometheus": 6,
    "__init__": 7,
    "cli": 8,  # the command line: serve (gunicorn) and client (websockets), over everything else
    "__main__": 9,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else LAYERS["__init__"]


def internal_imports(path: Path) -> set[str]:
    """Every wsgi_ws module ``path`` imports, type-only imports included."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith("wsgi_ws"):
                for alias in node.names:
                    candidate = f"{target}.{alias.name}"
                    found.add(candidate if _exists(candidate) else target)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("wsgi_ws")}
    found.discard(here)
    return found


def _exists(module: str) -> bool:
    relative = Path(*module.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").exists() or (PACKAGE / relative / "__init__.py").exists()


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_imports_point_only_downward(path: Path) -> None:
    here = module_name(path)
    for target in internal_imports(path):
        assert layer_of(target) <= layer_of(here), f"{here} (layer {layer_of(here)}) imports {target} (layer {layer_of(target)})"


def test_no_import_circle() -> None:
    graph = {module_name(path): internal_imports(path) for path in MODULES}
    for target_set in graph.values():
        target_set -= {"wsgi_ws"}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        if module in done:
            return
        assert module not in visiting, f"import circle: {' -> '.join([*visiting[visiting.index(module) :], module])}"
        visiting.append(module)
        for target in sorted(graph.get(module, ())):
            visit(target)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_the_protocol_layer_loads_no_io_in_a_fresh_interpreter() -> None:
    code = (
        "import json, pkgutil, sys, importlib\n"
        "import wsgi_ws.protocol\n"
        "for info in pkgutil.iter_modules(wsgi_ws.protocol.__path__, 'wsgi_ws.protocol.'):\n"
        "    importlib.import_module(info.name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=PACKAGE.parent, check=True)
    loaded = set(json.loads(run.stdout))
    foreign = {name for name in loaded if name.split(".")[0] in {"gevent", "gunicorn", "flask", "werkzeug", "geventwebsocket", "redis"}}
    assert not foreign, f"the protocol layer loaded {sorted(foreign)}"
    ours = {name for name in loaded if name.startswith("wsgi_ws.") and not name.startswith("wsgi_ws.protocol")}
    assert not ours, f"the protocol layer loaded {sorted(ours)} of ours"
    assert "wsgi_ws.protocol.session" in loaded


def test_no_module_over_400_lines() -> None:
    long = {str(path.relative_to(PACKAGE)): n for path in MODULES if (n := len(path.read_text().splitlines())) > 400}
    assert not long, f"modules over 400 lines: {long}"


def test_no_class_over_300_lines() -> None:
    long: dict[str, int] = {}
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None and node.end_lineno - node.lineno + 1 > 300:
                long[f"{path.relative_to(PACKAGE)}:{node.name}"] = node.end_lineno - node.lineno + 1
    assert not long, f"classes over 300 lines: {long}"


#: The test module of each source module whose test module is not simply ``test_<file name>.py``.
TEST_MODULE = {
    "__init__.py": "test_readme.py",  # the public names the README imports
    "worker.py": "test_packaging.py",  # the short public paths: the wheel and the README's imports
    "middleware.py": "test_servers.py",
    "flask_ext.py": "test_flask_ext.py",
    "protocol/__init__.py": "test_layers.py",
    "protocol/session.py": "test_protocol.py",
    "protocol/errors.py": "test_exceptions.py",
    "connection/__init__.py": "test_layers.py",
    "connection/info.py": "test_websocket.py",
    "connection/sending.py": "test_transport.py",
    "connection/roles.py": "test_websocket.py",  # protocols only: mypy --strict checks that WebSocket has them
    "integrations/__init__.py": "test_layers.py",
    "integrations/worker.py": "test_e2e_lifecycle.py",
    "integrations/middleware.py": "test_servers.py",
    "hub/__init__.py": "test_hub.py",
    "hub/hub.py": "test_hub.py",
    "hub/backends.py": "test_hub_backends.py",
    "hub/member.py": "test_hub.py",
    "hub/outgoing.py": "test_hub.py",
    "hub/redis_backend.py": "test_e2e_hub.py",
    "hub/redis_streams.py": "test_e2e_recovery.py",
    "hub/history.py": "test_recovery.py",
    "hub/feed.py": "test_recovery.py",
    "hub/fanout.py": "test_hub.py",
    "hub/process.py": "test_e2e_hub.py",
    "hub/people.py": "test_e2e_presence.py",
    "testing/__init__.py": "test_testing.py",
    "testing/live.py": "test_testing.py",
    "testing/client.py": "test_test_client.py",
    "testing/wsgi_server.py": "test_test_client.py",
    "__main__.py": "test_cli.py",
    "cli/__init__.py": "test_cli.py",
    "cli/serve.py": "test_cli.py",
    "cli/client.py": "test_cli.py",
}


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_every_source_module_has_a_test_module(path: Path) -> None:
    source = str(path.relative_to(PACKAGE))
    test_module = TEST_MODULE.get(source, f"test_{path.name}")
    assert (Path(__file__).parent / test_module).exists(), f"{source} has no test module {test_module}"
