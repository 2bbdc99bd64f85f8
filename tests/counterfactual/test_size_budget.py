"""The counterfactual core stays small enough to read (issue 20's size budget): no function over 60 lines, the
``CounterfactualRL`` facade under 400, ``xrl/counterfactual/`` plus the acceleration boundary at most 2,260 lines."""
import ast
from pathlib import Path

import xrl

PACKAGE = Path(xrl.__file__).resolve().parent
FILES = sorted((PACKAGE / "counterfactual").glob("*.py")) + [PACKAGE / "accel.py"]


def _nodes():
    for path in FILES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            yield path, node


def test_no_function_over_60_lines():
    long = [f"{p.name}:{n.name} ({n.end_lineno - n.lineno + 1} lines)" for p, n in _nodes()
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60]
    assert not long, long


def test_the_facade_and_the_package_stay_within_budget():
    facade = [n for _, n in _nodes() if isinstance(n, ast.ClassDef) and n.name == "CounterfactualRL"]
    assert len(facade) == 1 and facade[0].end_lineno - facade[0].lineno + 1 < 400
    assert len(FILES) > 10 and sum(len(p.read_text().splitlines()) for p in FILES) <= 2260
