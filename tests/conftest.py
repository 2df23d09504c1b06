import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pytest_addoption(parser):
    parser.addoption(
        "--real-hosts",
        action="store_true",
        default=False,
        help="run the acceptance checks against inventory.py's real hosts instead of the lab "
        "(never the default; the fault drills never run there)",
    )
