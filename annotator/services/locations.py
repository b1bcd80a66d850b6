from __future__ import annotations

from annotator.models import Camera, Company, Shelf, Store


def get_or_create_company(*, name: str) -> Company:
    company, _ = Company.objects.get_or_create(name=name)
    return company


def get_or_create_shelf(*, company: Company, store_code: str, camera_code: str, shelf_code: str) -> Shelf:
    """The shelf (and its store and camera) by their codes, created on first sight."""
    store, _ = Store.objects.get_or_create(company=company, code=store_code, defaults={"name": store_code})
    camera, _ = Camera.objects.get_or_create(store=store, code=camera_code)
    shelf, _ = Shelf.objects.get_or_create(camera=camera, code=shelf_code)
    return shelf


def set_annotation_interval(*, company: Company, hours: int) -> int:
    """Label one frame per camera every ``hours`` in every store of the company; returns the count."""
    return Store.objects.filter(company=company).update(annotation_interval_hours=hours)
