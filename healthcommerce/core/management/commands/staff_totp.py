"""``manage.py staff_totp``: enrol and remove staff TOTP devices, the admin's second factor (core/adminsite.py).

- ``add <username> [--name NAME] [--replace]``: make a device and print its ``otpauth://`` URI once, to scan
  or paste into an authenticator app (RFC 6238: SHA-1, 6 digits, 30 seconds). ``--replace`` removes the user's
  other TOTP devices (a lost phone). The secret is shown only here; nothing logs it.
- ``list [<username>]``: devices by user, name and last use (no secrets).
- ``remove <username> [--name NAME]``: remove the user's devices (all, or the one named).
- ``code <username>``: print the current code of the user's first device; embedded mode only (``make demo``),
  refused in production, where the code lives only on the staff member's phone.
"""

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice


class Command(BaseCommand):
    help = "Enrol (add), list, remove staff TOTP devices; code prints the current code in embedded mode only."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        add = actions.add_parser("add", help="Make a TOTP device and print its otpauth:// URI.")
        add.add_argument("username")
        add.add_argument("--name", default="authenticator")
        add.add_argument("--replace", action="store_true", help="Remove the user's other TOTP devices first.")
        listing = actions.add_parser("list", help="List TOTP devices (no secrets).")
        listing.add_argument("username", nargs="?")
        remove = actions.add_parser("remove", help="Remove a user's TOTP devices.")
        remove.add_argument("username")
        remove.add_argument("--name", default="")
        code = actions.add_parser("code", help="Print the current code (embedded mode only).")
        code.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"_{options['action']}")(options)

    def _user(self, username: str) -> Any:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        if not user.is_staff:
            raise CommandError(f"{username!r} is not staff: only staff log in to the admin.")
        return user

    def _add(self, options: dict[str, Any]) -> None:
        user = self._user(options["username"])
        if options["replace"]:
            TOTPDevice.objects.filter(user=user).delete()
        device = TOTPDevice.objects.create(user=user, name=options["name"], confirmed=True)
        self.stdout.write(f"TOTP device {device.name!r} for {user.username}; add it to an authenticator app:")
        self.stdout.write(device.config_url)

    def _list(self, options: dict[str, Any]) -> None:
        devices = TOTPDevice.objects.select_related("user").order_by("user__username", "name")
        if options["username"]:
            devices = devices.filter(user__username=options["username"])
        for device in devices:
            used = device.last_used_at.isoformat() if device.last_used_at else "never"
            self.stdout.write(f"{device.user.username}\t{device.name}\tconfirmed={device.confirmed}\tlast used {used}")

    def _remove(self, options: dict[str, Any]) -> None:
        devices = TOTPDevice.objects.filter(user=self._user(options["username"]))
        if options["name"]:
            devices = devices.filter(name=options["name"])
        count, _ = devices.delete()
        self.stdout.write(f"{count} device(s) removed.")

    def _code(self, options: dict[str, Any]) -> None:
        if not settings.SANDBOX_ENABLED:
            raise CommandError("Refused: codes are printed only in embedded mode (make demo).")
        device = TOTPDevice.objects.filter(user=self._user(options["username"])).order_by("created_at").first()
        if device is None:
            raise CommandError("No TOTP device: run staff_totp add first.")
        totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
        self.stdout.write(f"{totp.token():0{device.digits}d}")
