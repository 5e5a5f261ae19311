import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import OPENAPI, WASM  # noqa: E402


def pytest_sessionstart(session):
    if not WASM.exists():
        pytest.exit(f"{WASM} is missing: run `make test` (it builds the filter first)", returncode=2)


# Answers that do not match openapi/switchyard.yaml (see harness.OpenApiCheck) fail the test that got them.

def _openapi_violations(when: str) -> None:
    violations = OPENAPI.take()
    if violations:
        shown = "\n".join(violations[:20])
        more = f"\n... and {len(violations) - 20} more" if len(violations) > 20 else ""
        raise AssertionError(f"answers that do not match openapi/switchyard.yaml ({when}):\n{shown}{more}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    OPENAPI.take()
    result = yield
    _openapi_violations("setup")
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    _openapi_violations("test")
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    result = yield
    _openapi_violations("teardown")
    return result


def pytest_terminal_summary(terminalreporter):
    c = OPENAPI.counts
    terminalreporter.write_line(
        f"openapi/switchyard.yaml: {c['responses']} responses, {c['requests']} requests (2xx) and "
        f"{c['events']} stream events validated"
    )
    if c["responses"]:
        terminalreporter.write_line("  by path and status: " + ", ".join(f"{k}: {n}" for k, n in sorted(OPENAPI.by_status.items())))
