from django.core.management.base import BaseCommand, CommandError

from annotator.services.search_index import rebuild_search_space
from inference.search_space import SearchSpaceLocked


class Command(BaseCommand):
    help = "Recreate the search-space collection from every current label in the database."

    def handle(self, *args, **options):
        try:
            count = rebuild_search_space()
        except SearchSpaceLocked as error:  # the embedded engine's folder belongs to another process (the worker)
            raise CommandError(str(error)) from None
        self.stdout.write(self.style.SUCCESS(f"search space rebuilt: {count} annotated crops"))
