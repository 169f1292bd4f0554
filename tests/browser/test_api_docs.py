"""/docs: Swagger UI 5 renders the OpenAPI 3.1 document and its "Try it out" calls honour the token."""

from __future__ import annotations

import pytest

from tests.browser.conftest import TOKEN, post_runs, run_record, shot, start_console

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def reads_closed_server(tmp_path_factory):
    process = start_console(tmp_path_factory.mktemp("browser-docs"), TELEMETRY_API_AUTH_ENABLED="true",
                            TELEMETRY_API_AUTH_TOKEN=TOKEN, TELEMETRY_API_AUTH_READS="true")
    yield process
    process.stop()


def log_in(page, server) -> None:
    page.goto(server.url + "/login")
    page.fill("#password", TOKEN)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(server.url + "/")


def execute_list_runs(page) -> str:
    """Run "Try it out" on GET /api/v1/runs; the status code Swagger UI shows."""
    operation = page.locator("#operations-runs-list_runs")
    operation.locator(".btn.execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status")
    status.wait_for()
    return status.inner_text().strip().split()[0]


def test_docs_lists_the_operations_and_try_it_out_needs_authorize(reads_closed_server, page, console_errors):
    post_runs(reads_closed_server, [run_record(agent_name="documented", run_id="documented-run")], token=TOKEN)
    log_in(page, reads_closed_server)
    page.goto(reads_closed_server.url + "/docs")

    page.locator("#operations-runs-list_runs").wait_for()
    assert page.locator(".errors-wrapper").count() == 0, page.locator(".errors-wrapper").inner_text()
    for operation_id in ("runs-create_run", "runs-get_run", "runs-update_run", "runs-delete_run",
                         "runs-create_runs_batch", "ingest-ingest", "health-get_health"):
        assert page.locator(f"#operations-{operation_id}").count() == 1, operation_id

    page.locator("#operations-runs-list_runs .opblock-summary-control").click()
    page.locator("#operations-runs-list_runs .try-out__btn").click()
    assert execute_list_runs(page) == "401"
    page.locator("#operations-runs-list_runs .btn-clear").click()

    page.locator(".auth-wrapper .authorize").click()
    page.locator(".auth-container input").fill(TOKEN)
    page.locator(".auth-btn-wrapper .authorize").click()
    page.locator(".auth-btn-wrapper .btn-done").click()
    assert execute_list_runs(page) == "200"
    body = page.locator("#operations-runs-list_runs .live-responses-table .response .response-col_description").inner_text()
    assert "documented-run" in body
    shot(page, "api-docs")

    # Chromium logs the 401 that the first "Execute" was meant to get; nothing else may appear.
    expected = [e for e in console_errors if "401" in e and "Failed to load resource" in e]
    assert len(expected) == 1, console_errors
    console_errors.remove(expected[0])
