"""python manage.py study_link {create,list,deactivate} SLUG ... (issue 21; docs/crowd.md)"""
import json
from datetime import UTC, datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from annotation.enrol_views import link_url
from annotation.enrolment_models import StudyLink
from annotation.models import Study
from annotation.services import StudyFieldError
from annotation.services.links import link_create, link_set_active, link_urls, links_with_usage


class Command(BaseCommand):
    help = "Create, list or deactivate a study's enrolment links (participants join without an account)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="A new link; prints its token, path and (with --base-url) full and Prolific URLs as JSON.")
        create.add_argument("slug")
        create.add_argument("--label", default="")
        create.add_argument("--cap", type=int, help="At most this many participants through the link.")
        create.add_argument("--expires", help="ISO date-time, UTC unless it has an offset: 2026-12-31T18:00.")
        listing = sub.add_parser("list", help="The study's links with their usage, one JSON object a line.")
        listing.add_argument("slug")
        off = sub.add_parser("deactivate", help="No more enrolments through the link; its participants keep working.")
        off.add_argument("slug")
        off.add_argument("link_id", type=int)
        for action in (create, listing, off):
            action.add_argument("--base-url", default=getattr(settings, "SITE_URL", ""),
                                help="Scheme and host the site is served at (https://eval.example.org): each link "
                                     "then carries its full URL and its Prolific URL. Default: settings.SITE_URL.")

    def handle(self, *args, **o):
        study = Study.objects.filter(slug=o["slug"]).first()
        if study is None:
            raise CommandError(f"no study {o['slug']!r}")
        if o["base_url"] and not o["base_url"].startswith(("http://", "https://")):
            raise CommandError(f"--base-url {o['base_url']!r} must start with http:// or https://")
        if o["action"] == "create":
            expires = None
            if o["expires"]:
                try:
                    expires = datetime.fromisoformat(o["expires"])
                except ValueError:
                    raise CommandError(f"--expires {o['expires']!r} is not an ISO date-time") from None
                if expires.tzinfo is None:
                    expires = expires.replace(tzinfo=UTC)
            try:
                link = link_create(study=study, label=o["label"], max_participants=o["cap"], expires_at=expires)
            except StudyFieldError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(json.dumps(self._row(link, 0, o['base_url'])))
        elif o["action"] == "list":
            for link in links_with_usage(study=study):
                self.stdout.write(json.dumps(self._row(link, link.participants_count, o['base_url'])))
        else:
            link = StudyLink.objects.filter(study=study, pk=o["link_id"]).first()
            if link is None:
                raise CommandError(f"study {study.slug!r} has no link {o['link_id']}")
            link_set_active(link=link, is_active=False)
            self.stdout.write(json.dumps(self._row(link, link.participants.count(), o['base_url'])))

    @staticmethod
    def _row(link: StudyLink, participants: int, base_url: str) -> dict:
        urls = link_urls(absolute_path=base_url.rstrip("/") + link_url(link)) if base_url else {"url": None,
                                                                                             "prolific_url": None}
        return {"id": link.pk, "label": link.label, "token": link.token, "path": link_url(link), **urls,
                "max_participants": link.max_participants, "participants": participants,
                "expires_at": link.expires_at.isoformat() if link.expires_at else None, "is_active": link.is_active}
