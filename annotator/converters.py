"""URL converters. Database ids are 64-bit: a longer number in a URL is no id, and must be a 404
before it reaches a query the database cannot run."""
from django.urls import converters, register_converter

MAX_ID = 2**63 - 1


class DatabaseIdConverter(converters.IntConverter):
    regex = "[0-9]{1,18}"  # every 18-digit number is below MAX_ID


register_converter(DatabaseIdConverter, "id")
