from django.core.management.base import BaseCommand

from annotator.services.search_index import rebuild_search_space


class Command(BaseCommand):
    help = "Recreate the search-space collection from every current label in the database."

    def handle(self, *args, **options):
        count = rebuild_search_space()
        self.stdout.write(self.style.SUCCESS(f"search space rebuilt: {count} annotated crops"))
