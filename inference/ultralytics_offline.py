"""Making ultralytics run offline. Call ``prepare()`` before the first ``import ultralytics``.

Left alone, ultralytics reaches the network at run time: it resolves DNS names at import to decide
whether it is online, pip-installs missing packages (e.g. on ONNX export), checks PyPI for updates
and downloads ``Arial.ttf`` from GitHub the first time it draws a label, which every training run
and every validation with plots does. ``prepare()``

- sets ``YOLO_OFFLINE=1`` (no online check, no update check, no analytics) and
  ``YOLO_AUTOINSTALL=False`` (no pip at run time);
- sets ``YOLO_CONFIG_DIR`` to a folder it fills with ``Arial.ttf`` and ``Arial.Unicode.ttf``, copies
  of matplotlib's DejaVuSans.ttf, so the font is found locally and never fetched.

After importing ultralytics, call ``restore_pillow_open()``: ultralytics replaces ``PIL.Image.open``
for the whole process with a version that tries to pip-install ``pi-heif`` on unreadable images.

ultralytics reads these variables once, when it is first imported, so the first call decides the
folder; later calls return the folder in use. This is the only module of ``inference`` that touches
the environment, and it only writes to it.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path

FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")

_lock = threading.Lock()
_config_dir: Path | None = None


def default_config_dir() -> Path:
    """A per-user folder under the system's temporary directory."""
    return Path(tempfile.gettempdir()) / f"shelf-annotator-ultralytics-{getattr(os, 'getuid', lambda: 0)()}"


def prepare(config_dir: str | Path | None = None) -> Path:
    """Set ultralytics up to run offline; returns the ultralytics settings folder it will use
    (``<config_dir>/Ultralytics``), which holds the fonts. Idempotent and thread-safe."""
    global _config_dir
    with _lock:
        if _config_dir is None:
            _config_dir = Path(config_dir or default_config_dir()).resolve()
            os.environ["YOLO_OFFLINE"] = "1"
            os.environ["YOLO_AUTOINSTALL"] = "False"
            os.environ["YOLO_CONFIG_DIR"] = str(_config_dir)
        settings_dir = _settings_dir(_config_dir / "Ultralytics")
        install_fonts(settings_dir)
        return settings_dir


def install_fonts(folder: Path) -> None:
    """Put the fonts ultralytics looks for into ``folder`` unless they are there already."""
    from matplotlib import get_data_path

    source = Path(get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    folder.mkdir(parents=True, exist_ok=True)
    for name in FONT_NAMES:
        target = folder / name
        if not target.is_file():
            partial = folder / f".{name}.{os.getpid()}.part"
            shutil.copyfile(source, partial)
            partial.replace(target)  # atomic: a concurrent process never sees half a font


def _settings_dir(wanted: Path) -> Path:
    """The folder ultralytics actually uses. When it was imported before ``prepare()`` (by code
    that did not call it), its constants were fixed then: use its folder, and switch off its
    online features in the modules that copied them."""
    utils = sys.modules.get("ultralytics.utils")
    if utils is None:
        return wanted
    for name in ("ultralytics.utils", "ultralytics.utils.checks", "ultralytics.utils.events"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "ONLINE"):
            module.ONLINE = False
    for name in ("ultralytics.utils", "ultralytics.utils.checks"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "AUTOINSTALL"):
            module.AUTOINSTALL = False
    events = sys.modules.get("ultralytics.utils.events")
    if events is not None and hasattr(events, "events"):
        events.events.enabled = False
    return Path(utils.USER_CONFIG_DIR)


def restore_pillow_open() -> None:
    """Undo ultralytics' process-wide replacement of ``PIL.Image.open`` (made when it is imported).
    Its version answers any unreadable image by trying to install and import ``pi-heif``: offline
    that turns a plain "not an image" into an ImportError for every Pillow user in the process."""
    patches = sys.modules.get("ultralytics.utils.patches")
    original = getattr(patches, "_image_open", None)
    if original is not None:
        from PIL import Image

        Image.open = original
