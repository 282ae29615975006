"""No function or method in ``healthcommerce/`` (migrations aside) has a cyclomatic complexity over 15
(docs/style.md 13). The count is radon's (``radon.complexity.cc_visit``), the same number as
``radon cc -s healthcommerce`` prints for each function (F) and method (M); a class's own average is not checked.
"""

from pathlib import Path

from radon.complexity import cc_visit
from radon.visitors import Function

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "healthcommerce"
LIMIT = 15


def too_complex(source: str, *, limit: int = LIMIT) -> list[tuple[str, int, int]]:
    """Return ``(name, line, complexity)`` of each function or method in ``source`` over ``limit``, in file
    order; a method is named ``Class.method``."""
    found = []
    for block in cc_visit(source):
        if isinstance(block, Function) and block.complexity > limit:
            found.append((block.fullname, block.lineno, block.complexity))
    return sorted(found, key=lambda item: item[1])


def test_no_function_is_more_complex_than_15() -> None:
    over = [
        f"{path.relative_to(ROOT)}:{line} {name} ({complexity})"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "migrations" not in path.relative_to(PACKAGE).parts
        for name, line, complexity in too_complex(path.read_text(encoding="utf-8"))
    ]
    assert not over, f"{len(over)} function(s) over complexity {LIMIT}; split them:\n" + "\n".join(over)


def test_the_count_names_a_method_over_the_limit_and_spares_one_at_it() -> None:
    def method(name: str, branches: int) -> str:
        body = "".join(f"        if x == {n}:\n            return {n}\n" for n in range(branches))
        return f"    def {name}(self, x):\n{body}        return -1\n"

    source = "class Form:\n" + method("at_limit", LIMIT - 1) + method("over_limit", LIMIT)
    assert [(name, complexity) for name, _, complexity in too_complex(source)] == [("Form.over_limit", LIMIT + 1)]
