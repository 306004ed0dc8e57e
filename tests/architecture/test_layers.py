"""The layering of docs/architecture.md, checked on every import of the project's own code.

Apps import only apps below them; the ML core imports no Django. Imports inside functions count
too: a lazy import is still an arrow.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Bottom to top. An app may import itself and any app before it in this list.
LAYERS = ["common", "modeling", "annotation", "judge", "reports", "worker", "grag_site"]
# The ML core: plain Python on torch/transformers, runnable on a GPU host without Django. It may also
# read dataset files with the importers' parsers, which are Django-free (only importers/service.py is not).
ML_CORE = ["modeling/grag", "modeling/llm", "modeling/metrics", "modeling/text.py"]
DJANGO_FREE = ML_CORE + ["modeling/progress", "common/threads", "common/processes", "common/web_server", "common/latex", "modeling/importers/base", "modeling/importers/spc", "modeling/importers/pfg",
                         "modeling/importers/ed", "modeling/importers/convai2", "modeling/importers/jsonl"]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``; relative imports resolved."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
    return found


def _sources(where: str):
    target = ROOT / where
    if not target.exists() and target.with_suffix(".py").exists():
        target = target.with_suffix(".py")
    files = [target] if target.suffix == ".py" else sorted(target.rglob("*.py"))
    assert files, f"{where} has no Python file: update the lists above"
    return [f for f in files if "migrations" not in f.parts]


@pytest.mark.parametrize("app", LAYERS)
def test_an_app_imports_only_the_apps_below_it(app):
    allowed = set(LAYERS[: LAYERS.index(app) + 1])
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in _sources(app)
        for line, module in _imports(path)
        if module.split(".")[0] in LAYERS and module.split(".")[0] not in allowed
    ]
    assert not wrong, "imports against the layering (docs/architecture.md):\n" + "\n".join(wrong)


@pytest.mark.parametrize("part", DJANGO_FREE)
def test_the_ml_core_and_the_parsers_import_no_django_and_no_app(part):
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in _sources(part)
        for line, module in _imports(path)
        if module.split(".")[0] in {"django", "rest_framework", "celery", *LAYERS} - {"modeling", "common"}
        or (module.startswith("common") and not any(module.startswith(c.replace("/", ".")) for c in DJANGO_FREE))
        or (module.startswith("modeling.") and not any(module.startswith(c.replace("/", ".").removesuffix(".py"))
                                                        for c in DJANGO_FREE))
    ]
    assert not wrong, "the ML core must stay Django-free:\n" + "\n".join(wrong)


LAZY_MARK = "# lazy:"


def _lazy_imports_unexplained(path: Path) -> list[str]:
    """In-function imports of the project's own code in ``path`` without a ``# lazy:`` comment.

    The comment sits on the import's line or on a comment line directly above it (one comment may
    explain a block of adjacent imports); it says which cycle or which heavy import (torch,
    transformers) keeps the import inside the function.
    """
    lines = path.read_text().splitlines()
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    wrong = []
    for func in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    modules = [".".join(base + ([node.module] if node.module else []))]
                else:
                    modules = [node.module or ""]
            else:
                continue
            if not any(m.split(".")[0] in LAYERS for m in modules):
                continue
            row = node.lineno - 1
            explained = LAZY_MARK in lines[row]
            while not explained and row > 0 and lines[row - 1].strip().startswith(("#", "from ", "import ")):
                row -= 1
                explained = LAZY_MARK in lines[row]
            if not explained:
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {modules[0]} inside {func.name}()")
    return wrong


@pytest.mark.parametrize("app", LAYERS)
def test_an_import_of_the_project_inside_a_function_says_why(app):
    """Imports of the project's own modules go at the top of the module; one that must stay inside a
    function (a cycle, torch loaded only when used, a Celery task importing models at call time)
    carries a ``# lazy: <why>`` comment, so a newcomer knows it is deliberate."""
    wrong = [entry for path in _sources(app) for entry in _lazy_imports_unexplained(path)]
    assert not wrong, f"move these to the top of the module, or say why with a {LAZY_MARK!r} comment:\n" + "\n".join(wrong)
