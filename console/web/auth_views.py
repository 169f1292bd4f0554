"""Login and logout pages (only needed when TELEMETRY_API_AUTH_ENABLED is on)."""

from __future__ import annotations

from flask import current_app, redirect, request, url_for

from console.domain import audit
from console.web import auth as web_auth
from console.web import login_throttle, web_bp
from console.web.render import page


@web_bp.route("/login", methods=["GET", "POST"])
def login():
    next_path = web_auth.safe_next(request.values.get("next"))
    if not web_auth.auth_required():
        return redirect(next_path, 303)
    if request.method == "GET":
        return page("login.html", 200, error=None, username="", next_path=next_path)
    username = request.form.get("username", "").strip()
    retry_after, taken = login_throttle.take(username)
    if retry_after is not None:
        response = page("login.html", 429, username=username, next_path=next_path,
                        error=f"Too many failed logins. Try again in {retry_after} seconds.")
        response.headers["Retry-After"] = str(retry_after)
        return response
    verified = web_auth.verify_login(username, request.form.get("password", ""))
    if verified:
        login_throttle.give_back(taken)
        web_auth.log_in(*verified)
        return redirect(next_path, 303)
    address = login_throttle.client_address()
    current_app.extensions["telemetry_db"].write(
        lambda s: audit.record(s, f"ip:{address}", "login_failed", detail=username or "(token)"))
    return page("login.html", 401, error="Wrong user name, password or token.", username=username,
                next_path=next_path)


@web_bp.post("/logout")
def logout():
    web_auth.log_out()
    return redirect(url_for("web.login") if web_auth.auth_required() else "/", 303)
