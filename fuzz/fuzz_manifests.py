"""Fuzz target: manifest bytes -> loader -> validator -> plan -> plan renderer.

With atheris (``pip install -e '.[fuzz]'``; it needs a C compiler where no wheel fits):

    python fuzz/fuzz_manifests.py fuzz/corpus -max_total_time=300

Without it, ``tests/property`` runs the same properties over the corpus and over examples that
hypothesis makes. One input is one to three manifest files, split at ``SPLIT``. Properties,
for any input: no exception escapes (every fault is a problem); every problem names its file
and a line and column (>= 1); the plan and its JSON can be rendered; loading the files in
another order gives the same result and the same plan.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from reconciler.core import render
from reconciler.core.diff.guards import Guards
from reconciler.core.live import LiveState
from reconciler.core.plan import Plan
from reconciler.core.planner import compute
from reconciler.core.validate.checks import check
from reconciler.core.validate.crossdoc import combine
from reconciler.core.validate.document import parse_bytes
from reconciler.core.validate.result import Checked, Validated

SPLIT = b"\n#---8<---\n"  # where the fuzzer's input is cut into files
INSTANCE = "fuzz"

Files = Sequence[tuple[str, bytes]]


def files_of(data: bytes) -> list[tuple[str, bytes]]:
    """One fuzzer input as manifest files: ``a.yaml``, ``b/c.yaml``, ``d.yml``."""
    names = ("a.yaml", "b/c.yaml", "d.yml")
    return list(zip(names, data.split(SPLIT, len(names) - 1), strict=False))


def load(files: Files) -> Validated:
    """The files validated as ``adapters.manifests`` does it, in the order given."""
    checked: list[Checked] = []
    problems = []
    for name, data in files:
        documents, found = parse_bytes(data, name, name)
        problems.extend(found)
        checked.extend(check(doc) for doc in documents)
    return combine(checked, problems)


def plan_of(validated: Validated) -> Plan:
    """The plan against a host with nothing on it (the guards as a run would set them)."""
    guards = Guards(problems=len(validated.problems))
    return compute(validated, LiveState(vms=()), guards, INSTANCE)


def check_properties(files: Files) -> tuple[Validated, str]:
    """Every property, for these files; returns the result and the plan's text."""
    names = {name for name, _ in files}
    validated = load(files)
    for problem in validated.problems:
        assert problem.file in names, problem
        assert problem.line >= 1 and problem.column >= 1, problem
        assert problem.message and "\n" not in problem.message, problem
        assert "Traceback" not in problem.message, problem
    plan = plan_of(validated)
    text = render.plan_text(plan)
    json.dumps(render.plan_json(plan, validated.problems))
    for order in (list(reversed(files)), [*files[1:], *files[:1]]):
        again = load(order)
        assert again == validated, (again, validated)
        assert render.plan_text(plan_of(again)) == text
    return validated, text


def test_one_input(data: bytes) -> None:
    check_properties(files_of(data))


def main() -> None:
    import atheris  # the optional `fuzz` extra

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
