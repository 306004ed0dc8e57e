"""Every URL pattern the project registers, called by every role (issue 10, "Roles").

The patterns are walked from ``get_resolver()`` at collection time, so a view added tomorrow is
tested tomorrow: if no rule below covers its route, its test fails and says so. Each pattern
is requested with GET and POST (and every other method a DRF view implements) by:

- anonymous: must be sent to the login page (302 to /accounts/login/, or /admin/login/ for the
  admin) or get 401/403 from the API;
- the annotator of study Y: must get 403 or 404 on study X's items, every staff page and API,
  reports, results, job pages (the admin sends non-staff to its own login page);
- the annotator of study X: reaches X's annotator pages and API;
- staff: reaches every staff page, GET answering 2xx/3xx (405 on POST-only views).

Concrete URLs are built from real rows of the ``world`` fixture (tests/hardening/conftest.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, re_path
from rest_framework.views import APIView

from annotation.models import Study

PUBLIC, LOGGED_IN, ANNOTATOR, STAFF = "public", "logged-in", "annotator of the study", "staff"
# A crowd participant's own pages (issue 21): nobody else reaches them, named annotators and staff
# included; the participant's own way through is tested in tests/annotation/test_enrolment.py.
PARTICIPANT = "participant of the study"


@dataclass(frozen=True)
class Rule:
    access: str
    why: str = ""
    staff_also_ok: tuple[int, ...] = ()  # statuses staff may get besides 2xx/3xx (documented per rule)
    anonymous_refused: tuple[str, ...] = ()  # methods of a public route that need a login (documented per rule)


# Routes anyone may call, and why each is safe to leave open. Static files are not URL patterns
# (WhiteNoise serves them in front of the URL map) and are public as well.
ALLOWLIST = {
    "accounts/login/": "the login form itself",
    "accounts/logout/": "logging out needs no rights (POST only, CSRF-checked)",
    "healthz": "load balancers probe it without credentials; it answers only {\"ok\": true}",
    "favicon.ico": "the site's icon, a static image browsers ask for on every page",
    "api/token/": "how API clients log in: a username and password in, a token out",
    # The schema and its docs page describe routes and payload shapes, never data: no study,
    # item, system name or user is in them (test_blinding checks that). API clients need the
    # schema before they have a token, as drf-spectacular's default (AllowAny) intends.
    "api/schema/": "route and payload shapes only, no data",
    "api/docs/": "renders api/schema/ (Swagger UI), no data",
    "admin/login/": "the admin's login form",
    "admin/logout/": "logging out needs no rights; the admin sends non-staff to its index (its login)",
    # Issue 21: a study link is how participants without an account join; its unguessable token is
    # the credential. A wrong token is a 404 page, a closed link a 410, and nothing is created.
    "join/<str:token>/": "a study link: its token is the credential (docs/crowd.md)",
}

RULES: dict[str, Rule] = {
    **{route: Rule(PUBLIC, why) for route, why in ALLOWLIST.items()},
    # POST logs in (public); DELETE revokes the caller's own token, so it needs one (issue 17).
    "api/token/": Rule(PUBLIC, ALLOWLIST["api/token/"], anonymous_refused=("delete",)),
    # Any logged-in user; each sees only their own studies (checked below for annotator Y).
    "": Rule(LOGGED_IN, "home: the user's own studies"),
    "studies/": Rule(LOGGED_IN, "the user's own studies"),
    "api/studies/": Rule(LOGGED_IN, "the user's own studies"),
    # The annotator pages and API of one study.
    "studies/<slug:slug>/": Rule(ANNOTATOR),
    "studies/<slug:slug>/annotate/": Rule(ANNOTATOR),
    "studies/<slug:slug>/items/<str:public_id>/": Rule(ANNOTATOR),
    "api/studies/<slug:slug>/": Rule(ANNOTATOR),
    "api/studies/<slug:slug>/next/": Rule(ANNOTATOR),
    "api/studies/<slug:slug>/items/<str:item>/ratings/": Rule(ANNOTATOR),
    # Issue 21: the annotator's workflow (earlier items, skip, flag, instructions).
    "studies/<slug:slug>/items/<str:public_id>/skip/": Rule(ANNOTATOR),
    "studies/<slug:slug>/items/<str:public_id>/flag/": Rule(ANNOTATOR),
    "studies/<slug:slug>/done/": Rule(ANNOTATOR),
    "api/studies/<slug:slug>/instructions/": Rule(ANNOTATOR),
    "api/studies/<slug:slug>/items/": Rule(ANNOTATOR),
    "api/studies/<slug:slug>/items/<str:item>/": Rule(ANNOTATOR),
    "api/studies/<slug:slug>/items/<str:item>/skip/": Rule(ANNOTATOR),
    "api/studies/<slug:slug>/items/<str:item>/flag/": Rule(ANNOTATOR),
    "studies/<slug:slug>/manage/flags/<int:pk>/resolve/": Rule(STAFF),
    "api/staff/studies/<slug:slug>/flags/": Rule(STAFF),
    "api/staff/studies/<slug:slug>/flags/<int:flag>/resolve/": Rule(STAFF),
    # Staff pages: studies, reports, jobs, results, staff API.
    "studies/<slug:slug>/manage/": Rule(STAFF),
    "studies/<slug:slug>/manage/instructions/": Rule(STAFF),
    "studies/<slug:slug>/manage/questions/": Rule(STAFF),
    "studies/<slug:slug>/manage/annotators/": Rule(STAFF),
    "studies/<slug:slug>/manage/open/": Rule(STAFF),
    "studies/<slug:slug>/report/": Rule(STAFF),
    "studies/<slug:slug>/report/download/<str:fmt>/": Rule(STAFF),
    "api/studies/<slug:slug>/report/": Rule(STAFF),
    "planner/": Rule(STAFF),  # issue 20: study size planner
    "systems/ranking/": Rule(STAFF),  # issue 20: systems ranked across studies
    "systems/ranking/download/<str:fmt>/": Rule(STAFF),
    "jobs/": Rule(STAFF),
    "jobs/<int:pk>/": Rule(STAFF),
    "jobs/<int:pk>/cancel/": Rule(STAFF),
    "jobs/<int:pk>/retry/": Rule(STAFF),
    "jobs/launch/<str:kind>/": Rule(STAFF),
    "results/": Rule(STAFF),
    "results/table/": Rule(STAFF),
    "results/systems.<str:fmt>": Rule(STAFF),
    "results/systems/<int:pk>/": Rule(STAFF),
    # Without the query (systems, baseline, metric) these answer 400 naming what is missing.
    "results/table/download/<str:fmt>/": Rule(STAFF, staff_also_ok=(400,)),
    "results/ablation/": Rule(STAFF),
    "results/ablation/plot.<str:fmt>": Rule(STAFF, staff_also_ok=(400,)),
    "api/staff/studies/": Rule(STAFF),
    "api/staff/studies/<slug:slug>/": Rule(STAFF),
    "api/staff/studies/<slug:slug>/items/": Rule(STAFF),
    "api/staff/studies/<slug:slug>/ratings/": Rule(STAFF),
    "api/staff/studies/<slug:slug>/quality/": Rule(STAFF),
    "api/staff/studies/<slug:slug>/author-tells/": Rule(STAFF),
    "api/staff/studies/<slug:slug>/annotators/": Rule(STAFF),
    # Crowd studies (issue 21).
    "studies/<slug:slug>/onboarding/": Rule(PARTICIPANT),
    "studies/<slug:slug>/onboarding/<str:public_id>/": Rule(PARTICIPANT),
    "studies/<slug:slug>/end/": Rule(PARTICIPANT),
    "studies/<slug:slug>/leave/": Rule(PARTICIPANT),
    "studies/<slug:slug>/manage/links/": Rule(STAFF),
    "studies/<slug:slug>/manage/links/<int:pk>/active/": Rule(STAFF),
    "studies/<slug:slug>/manage/crowd/": Rule(STAFF),
    "studies/<slug:slug>/manage/participants.csv": Rule(STAFF),
    "api/staff/studies/<slug:slug>/links/": Rule(STAFF),
    "api/staff/studies/<slug:slug>/links/<int:pk>/": Rule(STAFF),
    "api/staff/studies/<slug:slug>/crowd/": Rule(STAFF),
    "api/staff/studies/<slug:slug>/participants/": Rule(STAFF),
}
# The admin: every page goes through AdminSite.admin_view (staff only). A few staff answers
# are 404 by design: no model has get_absolute_url ("view on site"), and the catch-all is the
# admin's own 404 page behind its login.
ADMIN_RULE = Rule(STAFF, "Django admin")
ADMIN_404 = {"admin/r/<path:content_type_id>/<path:object_id>/", "admin/(?P<url>.*)$"}
# Another account's password is its owner's or a superuser's to change (issue 17): staff who
# are not superusers get 403 on changing it (GET still shows the account read-only; the world's
# user row is annotator X's, not the staff's).
ADMIN_403 = {"admin/auth/user/<id>/password/", "admin/auth/user/<path:object_id>/change/"}
# Groups (permissions) and API tokens (credentials) are superuser-only admin pages: staff get 403 on
# every one of them (review of issue 17: a staff group gained every permission; staff read tokens).
ADMIN_SUPERUSER_PREFIXES = ("admin/auth/group/", "admin/authtoken/tokenproxy/")

# Views found broken are listed here with the reason, so their checks are strict xfails (a
# visible task) until their owners fix them; the mark must go once fixed (strict).
KNOWN_GAPS: dict[str, str] = {
    # Routes whose access is known to be wrong, each with the reason: a strict xfail, so that the
    # mark must go once the view is fixed. Empty: keep it that way.
}

PARAM = re.compile(r"<(?:\w+:)?(?P<name>\w+)>|\(\?P<(?P<rname>\w+)>[^)]*\)")


@dataclass(frozen=True)
class Route:
    route: str  # the pattern as registered, prefixes joined, e.g. studies/<slug:slug>/
    callback: object

    @property
    def is_admin(self) -> bool:
        return self.route.startswith("admin/")

    @property
    def rule(self) -> Rule | None:
        if self.route in RULES:
            return RULES[self.route]
        if self.is_admin:
            if self.route in ADMIN_403 or self.route.startswith(ADMIN_SUPERUSER_PREFIXES):
                return Rule(STAFF, ADMIN_RULE.why, (403,))
            return Rule(STAFF, ADMIN_RULE.why, (404,)) if self.route in ADMIN_404 else ADMIN_RULE
        return None

    @property
    def view_class(self):
        return getattr(self.callback, "cls", None) or getattr(self.callback, "view_class", None)


def _walk(patterns, prefix: str = ""):
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield Route(prefix + str(p.pattern), p.callback)


ROUTES = list(_walk(get_resolver().url_patterns))


def _route_param(route: Route):
    marks = [pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[route.route])] if route.route in KNOWN_GAPS else []
    return pytest.param(route, id=route.route or "<home>", marks=marks)


def _fill(route: str, name: str, world) -> str:
    """A real value for one URL parameter, so the request reaches the view's access check and beyond."""
    if name == "slug":
        return world.study_x.slug
    if name in ("public_id", "item"):
        return world.item_x.public_id
    if name in ("pk", "flag") and "/flags/" in route:
        from annotation.models import Flag

        flag, _ = Flag.objects.get_or_create(item=world.item_x, annotator=world.ann_x, defaults={"comment": "broken"})
        return str(flag.pk)
    if name == "pk" and route.startswith("jobs/"):
        return str(world.job.pk)
    if name == "pk" and route.startswith("results/systems/"):
        return str(world.system.pk)
    if name == "token" or (name == "pk" and "/links/" in route):
        from annotation.enrolment_models import StudyLink

        link = StudyLink.objects.filter(study=world.study_x).first() or StudyLink.objects.create(study=world.study_x)
        return link.token if name == "token" else str(link.pk)
    if name == "kind" and route.startswith("jobs/launch/"):
        return "import"
    if name == "fmt":
        prefixes = ("studies/", "results/table/", "results/ablation/", "results/systems", "systems/")
        return {"studies/": "json", "results/table/": "csv", "results/ablation/": "svg", "results/systems": "csv",
                "systems/": "json"}[next(p for p in prefixes if route.startswith(p))
        ]
    if route.startswith("admin/"):
        if name == "content_type_id":
            return str(ContentType.objects.get_for_model(Study).pk)
        if name == "object_id" and route.startswith("admin/r/"):
            return str(world.study_x.pk)
        if name == "object_id":
            app, model = route.split("/")[1:3]
            if f"{app}.{model}" not in world.objects:
                pytest.fail(f"the admin shows a new model {app}.{model}: add a row of it to world.objects "
                            "in tests/hardening/conftest.py")
            return str(world.objects[f"{app}.{model}"])
        if name == "id":
            return str(world.ann_x.pk)
        if name == "app_label":
            return "annotation"
        if name == "url":
            return "no-such-admin-page/"
    pytest.fail(f"no value for <{name}> in the new route {route!r}: add one to _fill in {__file__}")


def _admin_model(route: str):
    """The model of an admin add view (admin/<app>/<model>/add/), else None."""
    parts = route.split("/")
    if len(parts) == 5 and parts[0] == "admin" and parts[3] == "add":
        from django.apps import apps

        return apps.get_model(parts[1], parts[2])
    return None


def _url(route: str, world) -> str:
    path = PARAM.sub(lambda m: _fill(route, m.group("name") or m.group("rname"), world), route)
    return "/" + path.replace("^", "").replace("$", "")


def _methods(route: Route) -> list[str]:
    methods = ["get", "post"]
    cls = route.view_class
    if cls is not None and issubclass(cls, APIView):
        methods += [m for m in ("put", "patch", "delete") if hasattr(cls, m)]
    return methods


def _request(client: Client, user, method: str, url: str, *, api: bool, **extra):
    if user is not None:
        client.force_login(user)  # again before each request: a logout POST ends the session
    if method in ("post", "put", "patch") and api:
        return getattr(client, method)(url, data="{}", content_type="application/json", **extra)
    return getattr(client, method)(url, **extra)


def _login_redirect(response, *, admin: bool) -> bool:
    if response.status_code != 302:
        return False
    return urlsplit(response["Location"]).path == ("/admin/login/" if admin else "/accounts/login/")


def _allowed(response, *, admin: bool) -> bool:
    return (
        response.status_code < 500
        and response.status_code not in (401, 403, 404)
        and not _login_redirect(response, admin=admin)
        and not (admin and _login_redirect(response, admin=False))
    )


def _superuser():
    from django.contrib.auth.models import User

    return User.objects.filter(username="root").first() or User.objects.create_superuser("root", password="pw-root-123")


def _show(role: str, method: str, url: str, response) -> str:
    where = f" -> {response['Location']}" if response.has_header("Location") else ""
    return f"{role} {method.upper()} {url}: {response.status_code}{where}"


def test_every_registered_route_has_an_access_rule():
    """A new view must be classified here before it can ship: nothing slips in unprotected."""
    missing = [r.route for r in ROUTES if r.rule is None]
    assert not missing, f"routes without an access rule in {__file__} (add each to RULES): {missing}"
    stale = sorted(set(RULES) - {r.route for r in ROUTES})
    assert not stale, f"rules for routes that no longer exist: {stale}"


@pytest.mark.parametrize("route", [_route_param(r) for r in ROUTES if r.rule is not None])
def test_route_access(route: Route, world):
    problems = _access_problems(route, route.rule, world)
    assert not problems, f"{route.route or '<home>'} ({route.rule.access}):\n" + "\n".join(problems)


def _access_problems(route: Route, rule: Rule, world) -> list[str]:
    """Call ``route`` as every role and list each answer that breaks ``rule``."""
    url = _url(route.route, world)
    api = route.view_class is not None and issubclass(route.view_class, APIView)
    admin = route.is_admin
    methods = _methods(route)
    problems: list[str] = []
    secrets = [world.item_x.baseline_response, world.item_x.challenger_response, world.item_x.key]

    roles = {"anonymous": None, "annotator of X": world.ann_x, "annotator of Y": world.ann_y, "staff": world.staff}
    model = _admin_model(route.route)
    rows_before = model.objects.count() if model is not None else None
    answers = {role: {m: _request(Client(), user, m, url, api=api) for m in methods} for role, user in roles.items()}
    if model is not None and model.objects.count() != rows_before:
        # Nobody sent any field: a form with nothing required, or a read-only admin that still adds.
        problems.append(f"an empty POST to {url} created a {model._meta.label} row")

    def denied(role: str, *, anonymous: bool, methods: tuple[str, ...] | None = None):
        got = {m: r for m, r in answers[role].items() if methods is None or m in methods}
        if all(r.status_code == 405 for r in got.values()):
            problems.append(f"{role}: every method answered 405 on {url}; the walk never reached the view")
        for method, r in got.items():
            if anonymous:
                ok = r.status_code in (401, 403, 405) or _login_redirect(r, admin=admin)
            else:
                ok = r.status_code in (403, 404, 405) or (admin and _login_redirect(r, admin=True))
            if not ok:
                problems.append("should be refused: " + _show(role, method, url, r))
            body = r.content.decode(errors="replace")
            problems.extend(f"{role} {method.upper()} {url} shows {s!r}" for s in secrets if s in body)

    def allowed(role: str, *, extra_ok: tuple[int, ...] = ()):
        got = answers[role]
        for method, r in list(got.items()):
            if admin and r.status_code == 403:
                # The admin refuses some actions to everyone (ratings are append-only, imported
                # data is read-only): a 403 is fine only if a superuser gets it too.
                su = _request(Client(), _superuser(), method, url, api=api)
                if su.status_code == 403:
                    continue
            if method == "get":
                ok = r.status_code < 400 or r.status_code in (405, *extra_ok)
            else:
                ok = _allowed(r, admin=admin) or r.status_code in extra_ok
            if not ok:
                problems.append("should be allowed: " + _show(role, method, url, r))
        if all(r.status_code == 405 for r in got.values()):
            problems.append(f"{role}: every method answered 405 on {url}")

    for role, got in answers.items():
        problems.extend("server error: " + _show(role, m, url, r) for m, r in got.items() if r.status_code >= 500)

    if rule.access == PUBLIC:
        for role, got in answers.items():
            problems.extend(
                "public route refused: " + _show(role, m, url, r) for m, r in got.items()
                if r.status_code in (401, 403) and not (role == "anonymous" and m in rule.anonymous_refused)
            )
        if rule.anonymous_refused:
            denied("anonymous", anonymous=True, methods=rule.anonymous_refused)
    elif rule.access == LOGGED_IN:
        denied("anonymous", anonymous=True)
        for role in ("annotator of X", "annotator of Y", "staff"):
            allowed(role)
        # Logged in is not enough to see someone else's study.
        for method, r in answers["annotator of Y"].items():
            if world.study_x.slug in r.content.decode(errors="replace"):
                problems.append(f"annotator of Y {method.upper()} {url} lists study X")
    elif rule.access == ANNOTATOR:
        denied("anonymous", anonymous=True)
        denied("annotator of Y", anonymous=False)
        allowed("annotator of X")
        # htmx requests of an anonymous user: a redirect to the login page, never content.
        r = Client().get(url, HTTP_HX_REQUEST="true")
        if not (_login_redirect(r, admin=False) or r.status_code in (401, 403, 405)
                or (r.has_header("HX-Redirect") and urlsplit(r["HX-Redirect"]).path == "/accounts/login/" and not r.content)):
            problems.append("anonymous htmx GET should go to login: " + _show("anonymous", "get", url, r))
    elif rule.access == PARTICIPANT:
        for role in answers:
            denied(role, anonymous=role == "anonymous")
    else:
        denied("anonymous", anonymous=True)
        denied("annotator of X", anonymous=False)
        denied("annotator of Y", anonymous=False)
        allowed("staff", extra_ok=rule.staff_also_ok)

    return problems


def test_token_auth_reaches_the_same_rules(world):
    """The API's token auth gives an annotator no more than their session would."""
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=world.ann_y).key
    client = Client(HTTP_AUTHORIZATION=f"Token {token}")
    x = world.study_x.slug
    assert client.get(f"/api/studies/{x}/").status_code == 404
    assert client.post(f"/api/studies/{x}/next/").status_code == 404
    assert client.post(f"/api/studies/{x}/items/{world.item_x.public_id}/ratings/", data="{}",
                       content_type="application/json").status_code == 404
    assert client.get("/api/staff/studies/").status_code == 403
    assert client.get(f"/api/studies/{x}/report/").status_code == 403
    assert Client(HTTP_AUTHORIZATION="Token not-a-real-token").get("/api/studies/").status_code == 401


# --------------------------------------------------------------------------- the walk itself

def _leaky_view(request, slug: str):
    """What a forgotten decorator looks like: a study's items for anyone who asks."""
    from django.http import JsonResponse

    items = Study.objects.get(slug=slug).items.values_list("key", "baseline_response")
    return JsonResponse({"items": list(items)})


def _staff_only_view(request, slug: str):
    from common.permissions import staff_required

    return staff_required(lambda r, slug: _leaky_view(r, slug))(request, slug)


urlpatterns = [
    *get_resolver().url_patterns,
    re_path(r"^leaky/(?P<slug>[-\w]+)/$", _leaky_view),
    re_path(r"^guarded/(?P<slug>[-\w]+)/$", _staff_only_view),
]


@pytest.mark.urls(__name__)
def test_the_walk_catches_an_unprotected_view(world):
    """The checks above can fail: an unprotected staff view is reported for every outsider role."""
    leaky = Route("^leaky/(?P<slug>[-\\w]+)/$", _leaky_view)
    problems = _access_problems(leaky, Rule(STAFF), world)
    assert any(p.startswith("should be refused: anonymous GET /leaky/study-x/: 200") for p in problems), problems
    assert any(p.startswith("should be refused: annotator of Y GET") for p in problems), problems
    assert any("shows" in p and world.item_x.key in p for p in problems), problems
    guarded = Route("^guarded/(?P<slug>[-\\w]+)/$", _staff_only_view)
    assert _access_problems(guarded, Rule(STAFF), world) == []
    # And a route nobody classified is reported by name.
    assert Route("leaky/<slug:slug>/", _leaky_view).rule is None
