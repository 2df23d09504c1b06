"""pyinfra's planning costs made cheap (tasks/planning.py) give pyinfra's own results."""

from __future__ import annotations

from types import SimpleNamespace

import pyinfra
import pytest

from tasks import planning
from tasks.planning import arguments, facts, operation

ORIGINAL_ORDER = planning.pyinfra_util.get_operation_order_from_stack


def _both(state):
    return ORIGINAL_ORDER(state), planning.operation_order(state)


def _nested(state, depth):
    if depth:
        return _nested(state, depth - 1)
    return _both(state)


@pytest.mark.parametrize("is_cli", [True, False])
@pytest.mark.parametrize("deploy_file", [__file__, "/no/such/deploy.py", None])
def test_the_operation_order_is_pyinfras(monkeypatch, is_cli, deploy_file):
    monkeypatch.setattr(pyinfra, "is_cli", is_cli)
    state = SimpleNamespace(current_deploy_filename=deploy_file, current_op_file_number=7)
    for depth in (0, 3):
        theirs, ours = _nested(state, depth)
        assert ours == theirs
        # the test's own frames are in it when it is the deploy file, or when none is run
        assert len(ours) > (1 if is_cli else 0) or deploy_file not in (__file__, None)


def test_the_order_follows_the_calling_lines():
    state = SimpleNamespace(current_deploy_filename=__file__, current_op_file_number=0)
    first = planning.operation_order(state)
    second = planning.operation_order(state)
    assert first[:-1] == second[:-1] and second[-1] == first[-1] + 1


def test_install_puts_both_in_pyinfras_callers_and_keeps_the_arguments(monkeypatch):
    listed = arguments.all_global_arguments()
    for module, name in ((operation, "get_operation_order_from_stack"), (arguments, "all_global_arguments")):
        monkeypatch.setattr(module, name, getattr(module, name))
    monkeypatch.setattr(facts, "all_global_arguments", facts.all_global_arguments)
    planning.install()
    planning.install()
    assert operation.get_operation_order_from_stack is planning.operation_order
    assert facts.all_global_arguments is arguments.all_global_arguments
    assert arguments.all_global_arguments() == listed
    arguments.all_global_arguments().clear()  # a caller's copy: the next one is whole
    assert arguments.all_global_arguments() == listed
