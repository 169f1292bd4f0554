"""Login and logout pages (only needed when TELEMETRY_API_AUTH_ENABLED is on)."""

from __future__ import annotations

from flask import redirect, request, url_for

from console.web import auth as web_auth
from console.web import web_bp
from console.web.render import page


@web_bp.route("/login", methods=["GET", "POST"])
def login():
    next_path = web_auth.safe_next(request.values.get("next"))
    if not web_auth.auth_required():
        return redirect(next_path, 303)
    error = None
    username = ""
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        verified = web_auth.verify_login(username, request.form.get("password", ""))
        if verified:
            web_auth.log_in(*verified)
            return redirect(next_path, 303)
        error = "Wrong user name, password or token."
    return page("login.html", 401 if error else 200, error=error, username=username, next_path=next_path)


@web_bp.post("/logout")
def logout():
    web_auth.log_out()
    return redirect(url_for("web.login") if web_auth.auth_required() else "/", 303)
