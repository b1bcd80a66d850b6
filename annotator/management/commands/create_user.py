import getpass
import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotator.models import Company
from annotator.services.users import ROLES, MembershipRefused, create_user
from annotator.text import with_article


class Command(BaseCommand):
    help = ("Create a user of a company with one role, or reset an existing user's password (which ends their "
            "sessions and revokes their API token) and set their role in that company. The password is asked "
            "for, or read from standard input when it is not a terminal; it must pass the password validators.")

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--company", required=True, help="the company's name (it must exist)")
        parser.add_argument("--role", required=True, choices=ROLES, help="the user's role in that company")
        parser.add_argument("--add-company", action="store_true",
                            help="make an existing user a member of a company they do not belong to yet")

    def handle(self, *args, username, company, role, add_company, **options):
        try:
            company_obj = Company.objects.get(name=company)
        except Company.DoesNotExist:
            raise CommandError(f"no company named {company!r}") from None
        if sys.stdin.isatty():
            password = getpass.getpass(f"Password for {username}: ")
        else:
            password = sys.stdin.readline().rstrip("\n")
        try:
            create_user(username=username, password=password, role=role, company=company_obj, add_company=add_company)
        except ValidationError as error:
            raise CommandError(f"password refused: {' '.join(error.messages)}") from None
        except MembershipRefused as error:
            raise CommandError(f"{error}; --add-company makes them {with_article(role)} of {company} as well") from None
        self.stdout.write(f"{username} is {with_article(role)} of {company}")
