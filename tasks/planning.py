"""Two of pyinfra's costs on the control machine, paid once per operation call, made cheap with the
same results: where an operation stands in the deploy code, and the list of global arguments.

pyinfra orders a CLI run's operations by the line numbers of the deploy code that called them:
for every operation call on every host it takes `inspect.stack()`, which reads the source file of
every frame (and again for each frame's info) only to keep each frame's file name and line
number. `operation_order()` gives the same list from the frames themselves (a frame's
`f_code.co_filename` and `f_lineno` are what `inspect.getframeinfo` reports for them). pyinfra
also evaluates the type hints of its argument classes for every operation call and for every fact
class it defines, to list its global arguments, a list that never changes in a run.

`install()` puts both in place (config.py calls it before anything else is imported, as it calls
tasks.transport): pyinfra's own function names in the modules that call them, nothing else. The
unit test compares operation_order with pyinfra's own function on the same call stacks.
"""

from __future__ import annotations

import functools
import importlib
import sys

import pyinfra

# The modules themselves (pyinfra.api's `operation` is also the name of its decorator).
arguments = importlib.import_module("pyinfra.api.arguments")
facts = importlib.import_module("pyinfra.api.facts")
operation = importlib.import_module("pyinfra.api.operation")
pyinfra_util = importlib.import_module("pyinfra.api.util")

_MARK = "_llmlab_planning"


def operation_order(state) -> list[int]:
    """pyinfra.api.util.get_operation_order_from_stack, without reading any source file: the line
    numbers of the calling frames, outermost first, from the first frame of the deploy file being
    run on, those of pyinfra's own files left out (and in CLI mode the deploy file's number first)."""
    frames = []
    frame = sys._getframe(1)
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()

    # pyinfra's own function keeps only its own frame (one of pyinfra's) when no frame is the deploy
    # file's, and every frame when no deploy file is being run.
    start = 0
    if state.current_deploy_filename:
        start = next(
            (i for i, f in enumerate(frames) if f.f_code.co_filename == state.current_deploy_filename), len(frames)
        )

    line_numbers = [state.current_op_file_number] if pyinfra.is_cli else []
    install_dir = pyinfra_util.PYINFRA_INSTALL_DIR
    for frame in frames[start:]:
        if frame.f_code.co_filename.startswith(install_dir):
            continue
        line_numbers.append(frame.f_lineno)
    return line_numbers


def install() -> None:
    """Give pyinfra's callers operation_order and a global-arguments list computed once. Safe to
    call more than once."""
    if getattr(operation.get_operation_order_from_stack, _MARK, False):
        return
    listed = arguments.all_global_arguments()

    @functools.wraps(arguments.all_global_arguments)
    def all_global_arguments() -> list[tuple[str, type]]:
        return list(listed)

    for fn in (operation_order, all_global_arguments):
        setattr(fn, _MARK, True)
    operation.get_operation_order_from_stack = operation_order
    arguments.all_global_arguments = all_global_arguments
    facts.all_global_arguments = all_global_arguments
