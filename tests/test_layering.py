"""Dependencies point one way: an AST check of every ``emostream`` import under ``src/``.

The layers are written down in docs/architecture.md; ``LAYERS`` below is that table. A module
may import its own unit (top-level module or subpackage), any unit of a lower layer, and a unit
of its own layer as long as the units of a layer never import each other in a circle. The
base layer (``config``, ``errors``) imports nothing of ours. Function-level imports count the
same as module-level ones: a local import is for start-up time, never to hide a cycle.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "emostream"

# Highest first. "" is the package root (``emostream/__init__.py``): with ``api`` it is the public
# Python facade, which re-exports from the layers below, so nothing inside may import it back.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("entry", frozenset({"cli", "__main__", "", "api"})),
    ("features", frozenset({"demo", "bench", "worker", "edge", "dashboard", "security", "demo_devices"})),
    ("cluster", frozenset({"cluster", "topics"})),
    ("kafka", frozenset({"kafka"})),
    ("domain", frozenset({"events", "signing", "model", "metrics", "schemas", "models_data"})),
    ("base", frozenset({"config", "errors"})),
)
ISOLATED = frozenset({"base"})  # layers whose modules import nothing of ours


@dataclass(frozen=True)
class Import:
    """One ``emostream`` import: where it is, what it names, and whether it sits inside a function."""

    module: str
    line: int
    target: str
    in_function: bool


def module_name(path: Path, src: Path) -> str:
    """``src/emostream/kafka/admin.py`` → ``emostream.kafka.admin``; a package's ``__init__`` → the package."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> list[Import]:
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend(Import(module, child.lineno, a.name, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    parts = package.split(".")
                    target = ".".join(parts[: len(parts) - (child.level - 1)] + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                for alias in child.names:
                    # ``from emostream import worker`` names a module; ``from emostream import __version__`` does not.
                    named = f"{target}.{alias.name}"
                    found.append(Import(module, child.lineno, named if named in known else target, in_function))
            visit(child, inner)

    visit(tree, False)
    return [i for i in found if i.target == ROOT or i.target.startswith(ROOT + ".")]


def collect(src: Path) -> list[Import]:
    """Every ``emostream`` import in the package under ``src``."""
    paths = sorted((src / ROOT).rglob("*.py"))
    known = {module_name(p, src) for p in paths}
    found: list[Import] = []
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        found.extend(_imports(tree, module_name(path, src), path.name == "__init__.py", known))
    return found


def unit_of(module: str) -> str:
    """The layering unit of a module: the first name below ``emostream`` ("" for the root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_of(unit: str) -> int:
    """Index into ``LAYERS`` (0 is the top); a unit missing from the table is an error."""
    for index, (_name, units) in enumerate(LAYERS):
        if unit in units:
            return index
    raise KeyError(unit)


def violations(imports: list[Import]) -> list[str]:
    """Every upward import, every import out of an isolated layer, every cycle between units."""
    problems: list[str] = []
    edges: dict[str, set[str]] = {}
    for imp in imports:
        src_unit, dst_unit = unit_of(imp.module), unit_of(imp.target)
        where = f"{imp.module}:{imp.line}{' (in a function)' if imp.in_function else ''}"
        try:
            src_layer, dst_layer = layer_of(src_unit), layer_of(dst_unit)
        except KeyError as exc:
            problems.append(f"{where}: unit {exc.args[0]!r} has no layer; add it to LAYERS and docs/architecture.md")
            continue
        if src_unit == dst_unit:
            continue
        if LAYERS[src_layer][0] in ISOLATED:
            problems.append(f"{where} imports {imp.target}: the {LAYERS[src_layer][0]} layer imports nothing of ours")
        elif dst_layer < src_layer:
            problems.append(f"{where} imports {imp.target}: {LAYERS[src_layer][0]} may not import the "
                            f"{LAYERS[dst_layer][0]} layer above it")
        else:
            edges.setdefault(src_unit, set()).add(dst_unit)
    problems.extend(f"import cycle between units: {' -> '.join(c)}" for c in _cycles(edges))
    return problems


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def walk(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            path = stack + [node]
            if state.get(nxt) == 1:  # on the current path: a circle
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt, path)
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            walk(node, [])
    return cycles


# --- the real tree -------------------------------------------------------------------------------


def test_every_unit_has_a_layer() -> None:
    units = {unit_of(module_name(p, SRC)) for p in (SRC / ROOT).rglob("*.py")}
    missing = [u for u in sorted(units) if not any(u in us for _n, us in LAYERS)]
    assert not missing, f"units without a layer: {missing}; add them to LAYERS and docs/architecture.md"


def test_dependencies_point_one_way() -> None:
    problems = violations(collect(SRC))
    assert not problems, "upward imports:\n" + "\n".join(problems)


# --- the checker itself, on synthetic trees --------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in {"emostream/__init__.py": "", **files}.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(tmp_path).parents:
            init = tmp_path / parent / "__init__.py"
            if parent.parts and not init.exists():
                init.write_text("")
        path.write_text(text)
    return tmp_path


def test_a_clean_tree_passes(tmp_path: Path) -> None:
    src = _tree(tmp_path, {
        "emostream/cli/__init__.py": "from emostream.worker import run\n",
        "emostream/worker/__init__.py": "from emostream.kafka.admin import Admin\nfrom emostream.model import load\n",
        "emostream/kafka/admin.py": "from emostream.errors import KafkaError\nfrom . import configuration\n",
        "emostream/kafka/configuration.py": "from emostream.config import TOPIC\n",
        "emostream/cluster/brokers.py": "def f():\n    from emostream.kafka.admin import Admin\n",
    })
    assert violations(collect(src)) == []


def test_cluster_importing_security_fails_even_inside_a_function(tmp_path: Path) -> None:
    src = _tree(tmp_path, {
        "emostream/security/files.py": "",
        "emostream/cluster/brokers.py": "def up():\n    from emostream.security.files import SecurityFiles\n",
    })
    (problem,) = violations(collect(src))
    assert problem.startswith("emostream.cluster.brokers:2 (in a function) imports emostream.security.files")


def test_kafka_importing_security_fails_also_relative_and_as_a_name(tmp_path: Path) -> None:
    src = _tree(tmp_path, {
        "emostream/security/roles.py": "",
        "emostream/kafka/security.py": "from ..security import roles\n",
        "emostream/kafka/admin.py": "from emostream import security\n",
        "emostream/kafka/producer.py": "from emostream import __version__\n",
        "emostream/kafka/consumer.py": "import emostream.security.roles\n",
    })
    problems = violations(collect(src))
    assert len(problems) == 4, problems
    assert sum("kafka may not import the features layer" in p for p in problems) == 3
    assert any(p.startswith("emostream.kafka.producer:1 imports emostream:") for p in problems)


def test_config_imports_nothing_of_ours_and_features_never_import_cli(tmp_path: Path) -> None:
    src = _tree(tmp_path, {
        "emostream/config.py": "def f():\n    from emostream.errors import ConfigError\n",
        "emostream/demo.py": "from emostream.cli import main\n",
    })
    problems = violations(collect(src))
    assert any(p.startswith("emostream.config:2 (in a function)") and "imports nothing of ours" in p for p in problems)
    assert any(p.startswith("emostream.demo:1") and "above it" in p for p in problems)


def test_a_cycle_inside_a_layer_fails(tmp_path: Path) -> None:
    src = _tree(tmp_path, {
        "emostream/edge/sender.py": "from emostream.demo_devices import names\n",
        "emostream/demo_devices.py": "from emostream.edge.corpus import texts\n",
        "emostream/edge/corpus.py": "",
    })
    (problem,) = violations(collect(src))
    assert "cycle" in problem and "demo_devices" in problem and "edge" in problem


def test_an_unknown_unit_is_named(tmp_path: Path) -> None:
    src = _tree(tmp_path, {"emostream/newthing.py": "from emostream.errors import X\n"})
    (problem,) = violations(collect(src))
    assert "'newthing' has no layer" in problem


def test_every_python_script_imports_what_exists():
    """scripts/*.py import private helpers of the package (the bench's); a rename must not break
    them unnoticed (profile_worker.py once imported a helper that had been renamed)."""
    import importlib.util

    scripts = sorted((SRC.parent / "scripts").glob("*.py"))
    assert scripts
    for path in scripts:
        spec = importlib.util.spec_from_file_location(f"_script_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # each runs its main only under __main__
        assert callable(getattr(module, "main", None)), f"{path.name} has no main()"
