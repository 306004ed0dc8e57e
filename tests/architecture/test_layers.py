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
ML_CORE = ["modeling/grag", "modeling/llm", "modeling/metrics.py", "modeling/text.py"]
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
