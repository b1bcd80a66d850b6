import getpass
import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotator.models import Company
from annotator.services.users import ROLES, create_user


class Command(BaseCommand):
    help = ("Create (or reset) a user of a company with one role. The password is asked for, or read from "
            "standard input when it is not a terminal; it must pass the password validators.")

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--company", required=True, help="the company's name (it must exist)")
        parser.add_argument("--role", required=True, choices=ROLES)

    def handle(self, *args, username, company, role, **options):
        try:
            company_obj = Company.objects.get(name=company)
        except Company.DoesNotExist:
            raise CommandError(f"no company named {company!r}") from None
        if sys.stdin.isatty():
            password = getpass.getpass(f"Password for {username}: ")
        else:
            password = sys.stdin.readline().rstrip("\n")
        try:
            create_user(username=username, password=password, role=role, company=company_obj)
        except ValidationError as error:
            raise CommandError(f"password refused: {' '.join(error.messages)}") from None
        self.stdout.write(f"{username} is a {role} of {company}")
