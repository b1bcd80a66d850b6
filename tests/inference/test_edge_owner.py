"""One process owns an embedded engine's folder: a second one (a prefork worker's sibling,
``rebuild_search_space`` beside the worker) is refused with one line naming the owner, and
removes nothing of it."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from inference.search_space import OWNER_FILE, EdgeSearchSpace, SearchSpaceLocked, connect_qdrant
from tests.inference.test_exact_search_space import DIM, random_points

ROOT = Path(__file__).resolve().parents[2]
HOLDER = textwrap.dedent("""
    import sys
    import numpy as np
    from inference.search_space import EdgeSearchSpace, connect_qdrant
    from tests.inference.test_exact_search_space import DIM, random_points

    engine, folder = sys.argv[1], sys.argv[2]
    if engine == "edge":
        space = EdgeSearchSpace(folder, "crops-test", DIM)
        space.upsert(random_points(np.random.default_rng(5), 20))
        space.flush()
    else:
        client = connect_qdrant(path=folder)
    print("ready", flush=True)
    sys.stdin.read()  # hold the folder until the test closes our stdin
""")


@contextmanager
def held_by_another_process(engine: str, folder: Path) -> Iterator[subprocess.Popen]:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, engine, str(folder), "hold-the-folder"], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        yield holder
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


def assert_names(error: Exception, holder: subprocess.Popen) -> None:
    message = str(error)
    assert "\n" not in message
    assert f"pid {holder.pid}" in message and "hold-the-folder" in message


def test_a_second_process_is_refused_with_one_line_naming_the_owner(tmp_path):
    with held_by_another_process("edge", tmp_path / "edge") as holder:
        space = EdgeSearchSpace(tmp_path / "edge", "crops-test", DIM)
        with pytest.raises(SearchSpaceLocked) as refused:
            space.count()
        assert_names(refused.value, holder)
        with pytest.raises(SearchSpaceLocked):
            space.upsert(random_points(np.random.default_rng(6), 3))


def test_a_rebuild_beside_the_owner_removes_nothing(tmp_path):
    with held_by_another_process("edge", tmp_path / "edge") as holder:
        with pytest.raises(SearchSpaceLocked) as refused:
            EdgeSearchSpace(tmp_path / "edge", "crops-test", DIM).recreate()
        assert_names(refused.value, holder)
    reopened = EdgeSearchSpace(tmp_path / "edge", "crops-test", DIM)
    assert reopened.count() == 20
    reopened.close()


def test_the_owner_record_is_ours_while_open_and_goes_on_close(tmp_path):
    space = EdgeSearchSpace(tmp_path / "edge", "crops-test", DIM)
    space.ensure_collection()
    assert (space.path / OWNER_FILE).is_file()
    space.close()
    assert not (space.path / OWNER_FILE).exists()


def test_local_mode_is_refused_with_one_line_naming_the_owner(tmp_path):
    with held_by_another_process("local", tmp_path / "local") as holder:
        with pytest.raises(SearchSpaceLocked) as refused:
            connect_qdrant(path=tmp_path / "local")
        assert_names(refused.value, holder)


@pytest.mark.django_db
def test_rebuild_search_space_exits_with_that_line(tmp_path, tiny_embedder):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    from annotator import engines
    from inference.pipeline import Pipeline, PipelineConfig

    space = EdgeSearchSpace(tmp_path / "edge", "crops-test", DIM)
    pipeline = Pipeline(tiny_embedder, space, PipelineConfig(version="v0-test"))
    with held_by_another_process("edge", tmp_path / "edge") as holder, \
            engines.override(embedder=tiny_embedder, search_space=space, pipeline=pipeline, detector=None):
        with pytest.raises(CommandError) as refused:
            call_command("rebuild_search_space")
        assert_names(refused.value, holder)
