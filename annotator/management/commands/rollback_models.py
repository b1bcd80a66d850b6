"""Return a company to the model set its current one replaced (the base set after a first promotion)."""
from django.core.management.base import BaseCommand, CommandError

from annotator.models import Company
from annotator.services.model_sets import ModelSetStateError, rollback


class Command(BaseCommand):
    help = "Roll a company back to its previous model set; its collection was kept current all along."

    def add_arguments(self, parser):
        parser.add_argument("--company", required=True)

    def handle(self, *args, company, **options):
        try:
            owner = Company.objects.get(name=company)
        except Company.DoesNotExist:
            raise CommandError(f"--company: no company named {company!r}") from None
        try:
            owner = rollback(company=owner)
        except ModelSetStateError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"{owner}: now on {owner.model_set.name if owner.model_set else 'the base model set'}")
