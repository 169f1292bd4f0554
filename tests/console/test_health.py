"""/health and /version on both backends."""

import pytest


def test_health_reports_storage_facts(client, backend):
    body = client.get("/health").get_json()
    assert body["status"] == "ok"
    assert body["version"] == "3.0.0"
    assert body["database"] == backend
    assert body["schema_revision"]
    if backend == "sqlite":
        assert body["journal_mode"] == "DELETE"
        assert body["synchronous"] == "FULL"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_health_names_the_journal_mode_and_synchronous_in_upper_case_as_configured(make_app):
    app = make_app(TELEMETRY_DB_JOURNAL_MODE="WAL", TELEMETRY_DB_SYNCHRONOUS="NORMAL")
    body = app.test_client().get("/health").get_json()
    assert (body["journal_mode"], body["synchronous"]) == ("WAL", "NORMAL")


def test_version_names_api_app_and_schema(client):
    body = client.get("/version").get_json()
    assert body["api_version"] == "3.0.0"
    assert body["app_version"]
    assert body["schema_revision"] == client.get("/health").get_json()["schema_revision"]


def test_unknown_api_path_answers_json_404(client):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.is_json and "detail" in response.get_json()


def test_every_response_carries_a_request_id(client):
    assert client.get("/health").headers["X-Request-ID"]
    assert client.get("/health", headers={"X-Request-ID": "abc"}).headers["X-Request-ID"] == "abc"


def test_health_is_503_with_retry_after_when_the_database_is_unreachable(tmp_path):
    from console.app import create_app
    from console.core.settings import load_settings

    # A port nothing listens on: the database cannot be reached.
    settings = load_settings({"TELEMETRY_DATABASE_URL": "postgresql://postgres@127.0.0.1:9/none",
                              "TELEMETRY_BASE_DIR": str(tmp_path)})
    response = create_app(settings).test_client().get("/health")
    assert response.status_code == 503
    assert response.headers["Retry-After"] and "unavailable" in response.get_json()["detail"]
