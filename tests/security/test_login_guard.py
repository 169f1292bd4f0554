"""Page login against guessing and stolen cookies, through the real `serve`.

Failed logins are throttled per client address and per user name (429 + Retry-After,
no password hash while throttled), across workers; each hash of a failed guess leaves
an audit entry `login_failed`, which is how the test counts the hashes. Sessions live on
the server: logout ends them for every copy of the cookie, they expire after
TELEMETRY_SESSION_HOURS, the cookie holds no token material and is Secure over HTTPS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import threading
import time
import uuid
import zlib

import pytest
import requests
import sqlalchemy as sa

from console.domain import users
from console.store.models import audit_log, page_sessions
from tests.helpers import ConsoleProcess, free_port

OPERATOR = "guard-operator-token-6f3a"
PASSWORD = "correct horse battery"
MAX_FAILURES = 10  # TELEMETRY_LOGIN_MAX_FAILURES' default
WINDOW_SECONDS = 15 * 60  # TELEMETRY_LOGIN_WINDOW_MINUTES' default
GUESSERS = 16
GUESS_SECONDS = 10.0


def serve(env, tmp_path, **extra) -> ConsoleProcess:
    process = ConsoleProcess({**env, "TELEMETRY_API_PORT": str(free_port()), "TELEMETRY_API_AUTH_ENABLED": "true",
                              "TELEMETRY_OPERATOR_TOKENS": OPERATOR, **extra},
                             tmp_path / f"console-{uuid.uuid4().hex[:6]}.log")
    process.start()
    return process


def login_form(session: requests.Session, url: str, headers=None) -> str:
    page = session.get(url + "/login", headers=headers, timeout=30).text
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def post_login(session, url, csrf, username, password, headers=None):
    return session.post(url + "/login", data={"username": username, "password": password, "csrf_token": csrf},
                        headers=headers, timeout=30, allow_redirects=False)


def failed_logins(db) -> int:
    with db.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(audit_log)
                            .where(audit_log.c.action == "login_failed")).scalar_one()


def guess_in_parallel(url: str, guess) -> dict:
    """GUESSERS threads, each with its own session and CSRF token, guessing for GUESS_SECONDS."""
    statuses: dict[int, int] = {}
    retry_afters: list[int] = []
    lock = threading.Lock()
    deadline = time.monotonic() + GUESS_SECONDS

    def worker(index: int) -> None:
        session = requests.Session()
        headers = guess(index, 0)[1]
        csrf = login_form(session, url, headers)
        attempt = 0
        while time.monotonic() < deadline:
            attempt += 1
            username, headers = guess(index, attempt)
            resp = post_login(session, url, csrf, username, "wrong password", headers)
            with lock:
                statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
                if resp.status_code == 429:
                    retry_afters.append(int(resp.headers["Retry-After"]))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(GUESSERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(GUESS_SECONDS * 10)  # hang guard
    assert not any(t.is_alive() for t in threads)
    return {"statuses": statuses, "retry_afters": retry_afters}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_parallel_guessers_are_throttled_and_throttled_guesses_cost_no_hash(env, tmp_path, db_for):
    db = db_for(env)
    db.write(lambda s: users.create_user(s, "alice", PASSWORD))
    console = serve(env, tmp_path, TELEMETRY_TRUSTED_PROXIES="1", TELEMETRY_API_WORKERS="2")
    bound = MAX_FAILURES + math.ceil(GUESS_SECONDS * MAX_FAILURES / WINDOW_SECONDS)
    try:
        # One user name from 16 addresses: the user's bucket holds.
        by_user = guess_in_parallel(console.url, lambda i, n: ("alice", {"X-Forwarded-For": f"10.1.0.{i + 1}"}))
        wrong = by_user["statuses"].get(401, 0)
        assert set(by_user["statuses"]) <= {401, 429}, by_user["statuses"]
        assert 1 <= wrong <= bound, by_user["statuses"]
        assert by_user["statuses"][429] > wrong  # the rest were refused before any hash
        assert min(by_user["retry_afters"]) >= 1
        assert failed_logins(db) == wrong  # one hash per unthrottled guess, none for the 429s
        # The right password is refused too while the name is throttled (no oracle), from a new address.
        session = requests.Session()
        fresh = {"X-Forwarded-For": "10.9.9.9"}
        resp = post_login(session, console.url, login_form(session, console.url, fresh), "alice", PASSWORD, fresh)
        assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1

        # One address, a new user name on every guess: the address's bucket holds.
        before = failed_logins(db)
        by_address = guess_in_parallel(console.url, lambda i, n: (f"user-{i}-{n}", {"X-Forwarded-For": "10.2.0.1"}))
        wrong = by_address["statuses"].get(401, 0)
        assert set(by_address["statuses"]) <= {401, 429} and 1 <= wrong <= bound, by_address["statuses"]
        assert failed_logins(db) - before == wrong
        print(f"\nlogin throttle: per user {by_user['statuses']}, per address {by_address['statuses']}, "
              f"bound {bound} hashes per key in {GUESS_SECONDS:.0f} s")

        # Another address and user are not affected; a success gives its tries back.
        other = {"X-Forwarded-For": "10.3.0.1"}
        session = requests.Session()
        csrf = login_form(session, console.url, other)
        for _ in range(MAX_FAILURES + 3):
            resp = post_login(session, console.url, csrf, "", OPERATOR, other)
            assert resp.status_code == 303
            csrf = login_form(session, console.url, other)
    finally:
        console.stop()


def cookie_payload(value: str) -> dict:
    """The readable part of Flask's signed cookie (base64 JSON, zlib when it starts with '.')."""
    compressed = value.startswith(".")
    data = value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    return json.loads(zlib.decompress(raw) if compressed else raw)


def secure_login(url: str, proto: str, username: str, password: str):
    """A login with X-Forwarded-Proto: `proto`; the cookie is sent by hand (over plain HTTP
    a client would keep a Secure cookie to itself, as it should)."""
    form = requests.get(url + "/login", headers={"X-Forwarded-Proto": proto}, timeout=30)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    headers = {"X-Forwarded-Proto": proto, "Cookie": f"session={form.cookies['session']}"}
    return requests.post(url + "/login", data={"username": username, "password": password, "csrf_token": csrf},
                         headers=headers, timeout=30, allow_redirects=False)


def session_cookie(resp) -> str:
    return next(v for k, v in resp.headers.items() if k == "Set-Cookie" and v.startswith("session="))


def test_logout_ends_the_session_everywhere_and_sessions_expire(env, tmp_path, db_for):
    db = db_for(env)
    db.write(lambda s: users.create_user(s, "bob", PASSWORD))
    console = serve(env, tmp_path, TELEMETRY_TRUSTED_PROXIES="1")
    try:
        for username, password in (("bob", PASSWORD), ("", OPERATOR)):
            browser = requests.Session()
            resp = post_login(browser, console.url, login_form(browser, console.url), username, password)
            assert resp.status_code == 303, resp.text[:300]
            cookie = browser.cookies["session"]
            payload = cookie_payload(cookie)
            assert set(payload) <= {"sid", "csrf", "_permanent"}, payload
            readable = json.dumps(payload)
            for secret in (OPERATOR, hashlib.sha256(OPERATOR.encode()).hexdigest()[:8], PASSWORD):
                assert secret not in readable
            with db.engine.connect() as conn:
                row = conn.execute(sa.select(page_sessions)).mappings().one()
            assert (row["expires_at"] - row["created_at"]).total_seconds() == 12 * 3600
            assert browser.get(console.url + "/", timeout=30).status_code == 200

            thief = requests.Session()
            thief.cookies.set("session", cookie)
            assert thief.get(console.url + "/", timeout=30).status_code == 200  # a copy works while logged in
            page = browser.get(console.url + "/", timeout=30).text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
            assert browser.post(console.url + "/logout", data={"csrf_token": csrf}, timeout=30,
                                allow_redirects=False).status_code == 303
            resp = thief.get(console.url + "/", timeout=30, allow_redirects=False)
            assert resp.status_code == 303 and resp.headers["Location"].startswith("/login")
            with db.engine.connect() as conn:
                assert conn.execute(sa.select(sa.func.count()).select_from(page_sessions)).scalar_one() == 0

        # A session past its lifetime is over, whatever the cookie says.
        browser = requests.Session()
        assert post_login(browser, console.url, login_form(browser, console.url), "bob", PASSWORD).status_code == 303
        assert browser.get(console.url + "/", timeout=30, allow_redirects=False).status_code == 200
        with db.engine.begin() as conn:
            conn.execute(sa.update(page_sessions).values(expires_at=page_sessions.c.created_at))
        resp = browser.get(console.url + "/", timeout=30, allow_redirects=False)
        assert resp.status_code == 303 and resp.headers["Location"].startswith("/login")

        # Secure when the login came over HTTPS through the trusted proxy; not over plain HTTP.
        for proto, secure in (("https", True), ("http", False)):
            resp = secure_login(console.url, proto, "bob", PASSWORD)
            flags = {part.strip().lower() for part in session_cookie(resp).split(";")}
            assert ("secure" in flags) is secure, (proto, flags)
            assert "httponly" in flags and "samesite=lax" in flags
    finally:
        console.stop()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_forwarded_proto_from_an_untrusted_client_does_not_mark_the_cookie_secure(env, tmp_path):
    console = serve(env, tmp_path)  # TELEMETRY_TRUSTED_PROXIES=0
    try:
        resp = secure_login(console.url, "https", "", OPERATOR)
        assert resp.status_code == 303
        assert "secure" not in {part.strip().lower() for part in session_cookie(resp).split(";")}
    finally:
        console.stop()
