"""`python manage.py fetch_dataset {spc,pfg,ed}`: download a public release into DATA_DIR.

Files go to ``DATA_DIR/<kind>/`` (settings.DATA_DIR, ``var/data`` by default) and are written
under a temporary name first, so an interrupted download never leaves a half file that a later
import would read. Prints one JSON line: {"dataset", "folder", "files", "bytes"} and the
``import_dataset`` commands to run next. Without a network it fails fast with a clear error.
"""
import json
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

SPC_BASE = "https://huggingface.co/datasets/google/Synthetic-Persona-Chat/resolve/main/data/"
PFG_BASE = "https://gitlab.com/ucdavisnlp/persuasionforgood/-/raw/master/data/FullData/"
ED_BASE = "https://dl.fbaipublicfiles.com/parlai/empatheticdialogues/"

# kind -> (base URL, [file names]); the ED release is one tarball holding train/valid/test.csv.
RELEASES = {
    "spc": (SPC_BASE, ["Synthetic-Persona-Chat_train.csv", "Synthetic-Persona-Chat_valid.csv", "Synthetic-Persona-Chat_test.csv"]),
    "pfg": (PFG_BASE, ["full_dialog.csv", "full_info.csv"]),
    "ed": (ED_BASE, ["empatheticdialogues.tar.gz"]),
}
NEXT_STEPS = {
    "spc": [f"import_dataset spc {{folder}}/Synthetic-Persona-Chat_{split}.csv" for split in ("train", "valid", "test")],
    "pfg": ["import_dataset pfg {folder}"],
    "ed": [f"import_dataset ed {{folder}}/{split}.csv" for split in ("train", "valid", "test")],
}
USER_AGENT = "grag-eval/1.0 (fetch_dataset)"


class Command(BaseCommand):
    help = "Download a public dataset release (spc, pfg, ed) into DATA_DIR/<kind>/."

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=list(RELEASES))
        parser.add_argument("--dest", type=Path, help="Folder to write to (default: DATA_DIR/<kind>).")
        parser.add_argument("--base-url", help="Download from this mirror instead (same file names).")
        parser.add_argument("--timeout", type=float, default=15.0, help="Seconds to wait for a server (default 15).")
        parser.add_argument("--force", action="store_true", help="Download files that are already there again.")

    def handle(self, *args, kind, dest, base_url, timeout, force, **opts):
        base, names = RELEASES[kind]
        base = base_url.rstrip("/") + "/" if base_url else base
        folder = dest or Path(settings.DATA_DIR) / kind
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for name in names:
            target = folder / name
            if target.exists() and not force:
                self.stderr.write(f"{target} exists; keeping it (--force downloads again)")
            else:
                self._download(base + name, target, timeout)
            written.append(target)
        if kind == "ed":
            written = self._unpack_ed(written[0], folder)
        steps = [f"python manage.py {step.format(folder=folder)}" for step in NEXT_STEPS[kind]]
        self.stdout.write(json.dumps({
            "dataset": kind, "folder": str(folder), "files": [p.name for p in written],
            "bytes": sum(p.stat().st_size for p in written), "next": steps,
        }))

    def _download(self, url: str, target: Path, timeout: float) -> None:
        self.stderr.write(f"downloading {url}")
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        try:
            self._fetch_to(request, target, timeout)
        except urllib.error.HTTPError as exc:
            raise CommandError(
                f"{url}: the server answered HTTP {exc.code} {exc.reason}; the release may have moved "
                f"(try --base-url with a mirror)."
            ) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CommandError(
                f"Cannot download {url}: {reason}. This machine seems to have no network access; download the "
                f"files elsewhere, copy them into {target.parent}, and run import_dataset on them."
            ) from None

    def _fetch_to(self, request, target: Path, timeout: float) -> None:
        """Stream to a hidden temporary file, then rename: no half file ever has the target's name."""
        partial = None
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False) as tmp:
                    partial = Path(tmp.name)
                    shutil.copyfileobj(response, tmp)
            partial.replace(target)
        except BaseException:
            if partial is not None:
                partial.unlink(missing_ok=True)
            raise

    def _unpack_ed(self, archive: Path, folder: Path) -> list[Path]:
        """Extract train/valid/test.csv of the ED tarball (nothing else, no paths outside folder)."""
        wanted = {"train.csv", "valid.csv", "test.csv"}
        out = []
        try:
            with tarfile.open(archive) as tar:
                for member in tar.getmembers():
                    name = Path(member.name).name
                    if member.isfile() and name in wanted:
                        source = tar.extractfile(member)
                        with open(folder / name, "wb") as handle:
                            shutil.copyfileobj(source, handle)
                        out.append(folder / name)
        except tarfile.TarError as exc:
            raise CommandError(f"{archive} is not a readable tar.gz ({exc}); delete it and fetch again.") from None
        missing = wanted - {p.name for p in out}
        if missing:
            raise CommandError(f"{archive} lacks {sorted(missing)}; delete it and fetch again.")
        return sorted(out)
