"""Page login when TELEMETRY_API_AUTH_ENABLED is on: token or CLI user, session cookie, CSRF."""

from __future__ import annotations

import re

import pytest

from console.app import create_app
from console.core.settings import load_settings
from console.domain import users
from tests.web.conftest import HTMX

TOKEN = "s3cret-token-value"


@pytest.fixture
def auth_app(env):
    settings = load_settings({**env, "TELEMETRY_API_AUTH_ENABLED": "true", "TELEMETRY_API_AUTH_TOKEN": TOKEN})
    app = create_app(settings, {"TESTING": True})
    yield app
    app.extensions["telemetry_db"].dispose()


@pytest.fixture
def auth_client(auth_app):
    return auth_app.test_client()


def login_form(client, next_path="/"):
    page = client.get(f"/login?next={next_path}").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_pages_redirect_to_the_login_when_auth_is_on(auth_client):
    for path in ("/", "/stale", "/agents", "/jobs", "/runs/x"):
        response = auth_client.get(path)
        assert response.status_code == 303, path
        assert response.headers["Location"].startswith("/login?next=")


def test_an_htmx_swap_is_told_to_go_to_the_login(auth_client):
    response = auth_client.get("/?status=failure", headers=HTMX)
    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/login?next=")


def test_the_api_token_logs_in_and_the_cookie_is_safe(auth_client):
    token = login_form(auth_client, "/stale")
    response = auth_client.post("/login", data={"csrf_token": token, "username": "", "password": TOKEN, "next": "/stale"})
    assert response.status_code == 303 and response.headers["Location"] == "/stale"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = auth_client.get("/stale")
    assert page.status_code == 200 and "Log out" in page.get_data(as_text=True)


def test_a_wrong_token_or_password_is_refused(auth_client, auth_app):
    auth_app.extensions["telemetry_db"].write(lambda s: users.create_user(s, "alice", "correct horse"))
    token = login_form(auth_client)
    for username, password in (("", "nope"), ("alice", "wrong pass"), ("bob", "correct horse")):
        response = auth_client.post("/login", data={"csrf_token": token, "username": username, "password": password})
        assert response.status_code == 401
        assert "Wrong user name" in response.get_data(as_text=True)
    assert auth_client.get("/").status_code == 303


def test_a_cli_user_logs_in_and_a_password_change_ends_the_session(auth_client, auth_app):
    db = auth_app.extensions["telemetry_db"]
    db.write(lambda s: users.create_user(s, "alice", "correct horse"))
    token = login_form(auth_client)
    response = auth_client.post("/login", data={"csrf_token": token, "username": "alice", "password": "correct horse"})
    assert response.status_code == 303
    assert "alice" in auth_client.get("/").get_data(as_text=True)
    db.write(lambda s: users.set_password(s, "alice", "battery staple"))
    assert auth_client.get("/").status_code == 303


def test_login_needs_the_csrf_token_too(auth_client):
    login_form(auth_client)
    response = auth_client.post("/login", data={"username": "", "password": TOKEN})
    assert response.status_code == 400


def test_logout_ends_the_session(auth_client):
    token = login_form(auth_client)
    auth_client.post("/login", data={"csrf_token": token, "password": TOKEN})
    page = auth_client.get("/jobs").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert auth_client.post("/logout", data={"csrf_token": csrf}).status_code == 303
    assert auth_client.get("/").status_code == 303


def test_the_next_parameter_never_leaves_the_site(auth_client):
    token = login_form(auth_client)
    response = auth_client.post("/login", data={"csrf_token": token, "password": TOKEN, "next": "//evil.example/x"})
    assert response.headers["Location"] == "/"


def test_secure_cookie_when_configured(env):
    settings = load_settings({**env, "TELEMETRY_API_AUTH_ENABLED": "true", "TELEMETRY_API_AUTH_TOKEN": TOKEN,
                              "TELEMETRY_COOKIE_SECURE": "true"})
    app = create_app(settings, {"TESTING": True})
    client = app.test_client()
    token = login_form(client)
    response = client.post("/login", data={"csrf_token": token, "password": TOKEN})
    assert "Secure" in response.headers["Set-Cookie"]
    app.extensions["telemetry_db"].dispose()


def test_without_auth_the_login_page_just_goes_home(client):
    assert client.get("/login").status_code == 303
