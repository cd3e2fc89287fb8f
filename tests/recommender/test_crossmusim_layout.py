"""One home for each job: who may import the training loop, and the core stays free of Django."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "recommender" / "crossmusim"
TRAIN = "recommender.crossmusim.train"
# the platform's training service is the one door to the loop; the core's own test of it the other
# The core's own tests of the loop (training with each option on) may import it too.
MAY_IMPORT_TRAIN = {"recommender/services/embedding_training.py", "tests/recommender/test_crossmusim_train.py",
                    "tests/recommender/test_crossmusim_timbre.py"}


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return names


def _sources():
    for folder in ("abplatform", "recommender", "experiments", "bench", "tests"):
        yield from (ROOT / folder).rglob("*.py")


def test_only_the_training_service_imports_the_training_loop():
    importers = {str(path.relative_to(ROOT)) for path in _sources()
                 if not path.is_relative_to(CORE) and TRAIN in _imported_modules(path)}
    assert importers <= MAY_IMPORT_TRAIN, sorted(importers - MAY_IMPORT_TRAIN)
    assert "recommender/services/embedding_training.py" in importers


def test_the_core_imports_no_django():
    offenders = {str(path.relative_to(ROOT)) for path in CORE.rglob("*.py")
                 if any(name == "django" or name.startswith("django.") for name in _imported_modules(path))}
    assert not offenders, sorted(offenders)
