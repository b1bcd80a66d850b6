from django.core.management.base import BaseCommand, CommandError

from annotator.services.locations import get_or_create_company
from annotator.services.users import MembershipRefused, create_demo_users


class Command(BaseCommand):
    help = "Create (or reset) one user per role for a company and print their passwords."

    def add_arguments(self, parser):
        parser.add_argument("--company", default="default")

    def handle(self, *args, company, **options):
        try:
            passwords = create_demo_users(company=get_or_create_company(name=company))
        except MembershipRefused as error:
            raise CommandError(f"{error}; the demo users belong to one company") from None
        for username, password in passwords.items():
            self.stdout.write(f"  {username:10s} {password}")
