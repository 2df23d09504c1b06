import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The suite runs in this order whatever the file names: checks that need no host first (fail
# fast), then the acceptance checks of the deployed stack, then a second deploy (idempotence),
# then the fault drills, which break and repair the lab on purpose, then adopting and taking over
# the hand-kept stack as found, then the lab's own restart. Every test file is placed here.
ORDER = [
    "unit/",
    "acceptance/test_stack.py",
    "acceptance/test_tools.py",
    "acceptance/test_agent_apis.py",
    "acceptance/test_clients.py",
    "acceptance/test_idempotence.py",
    "acceptance/test_doctor.py",
    "acceptance/test_drills.py",
    "acceptance/test_adopt.py",
    "acceptance/test_as_found.py",
    "acceptance/test_lab.py",  # last: it replaces the whole lab (new keys and sudo password)
]


def pytest_addoption(parser):
    parser.addoption(
        "--real-hosts",
        action="store_true",
        default=False,
        help="run the acceptance checks against inventory.py's real hosts instead of the lab "
        "(never the default; the deploys and fault drills never run there)",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "lab_only: deploys or breaks hosts on purpose; never runs with --real-hosts")


def _rank(item) -> int:
    path = Path(str(item.fspath)).relative_to(ROOT / "tests").as_posix()
    for rank, prefix in enumerate(ORDER):
        if path.startswith(prefix):
            return rank
    # A file placed nowhere would run after test_lab.py, against a lab whose keys it no longer has.
    raise pytest.UsageError(f"tests/{path} is not placed in ORDER (tests/conftest.py): say where it runs")


def pytest_collection_modifyitems(config, items):
    items.sort(key=_rank)  # stable: the order within a file stays as written
    if config.getoption("--real-hosts"):
        skip = pytest.mark.skip(reason="lab only: it deploys or breaks hosts, never the real ones")
        for item in items:
            if item.get_closest_marker("lab_only"):
                item.add_marker(skip)


_TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="session")
def timings():
    """Phase name -> seconds (a float) or a count (an int), printed at the end of the run
    (measured, never asserted here)."""
    return _TIMINGS


def pytest_terminal_summary(terminalreporter):
    if _TIMINGS:
        terminalreporter.section("timings")
        for name, value in _TIMINGS.items():  # seconds, or a count (an int)
            shown = f"{value:7d}" if isinstance(value, int) else f"{value:7.1f} s"
            terminalreporter.write_line(f"{name:55} {shown}")
