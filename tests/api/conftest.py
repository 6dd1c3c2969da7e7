"""The figures of the hostile-client tests, printed at the end of the run."""

from __future__ import annotations


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    import sys

    fuzz = sys.modules.get("test_api_fuzz")
    if fuzz is not None and fuzz.FIGURES["requests"]:
        figures = fuzz.FIGURES
        terminalreporter.write_sep("-", "API fuzzing (schemathesis)")
        terminalreporter.write_line(
            f"QINGLI_FUZZ_EXAMPLES={fuzz.EXAMPLES}: {len(fuzz.OPERATIONS)} operations, "
            f"{figures['examples']} generated cases, each sent as {len(fuzz.ROLES)} roles "
            f"({', '.join(fuzz.ROLES)}): {figures['requests']} requests, "
            f"{figures['failures']} failing"
        )
