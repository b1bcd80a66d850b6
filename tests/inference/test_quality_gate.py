"""Each check of the quality gate on made-up frames whose answer is known."""
import numpy as np
import pytest
from PIL import Image, ImageFilter

from inference.quality_gate import (
    FrameSignature,
    QualityGateConfig,
    assess,
    changed_cells,
    detection_check,
    largest_region_share,
    signature,
)


def shelf(seed=0, width=480, height=320):
    """A textured 'shelf': rows of coloured products with edges, mid-grey overall."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.float32)
    for top in range(0, height, 64):
        x = 0
        while x < width:
            w = min(int(rng.integers(18, 40)), width - x)
            if w < 12:
                break
            colour = rng.integers(60, 200, 3)
            image[top + 6: top + 58, x + 2: x + w - 2] = colour
            # a label on each product: fine texture
            image[top + 20: top + 30, x + 4: x + w - 4] = rng.integers(40, 220, (10, max(w - 8, 1), 3))
            x += w
        image[top + 58: top + 64] = 120  # the shelf board
    image += rng.normal(0, 3, image.shape)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def test_a_clean_frame_passes_every_check():
    frame = shelf(0)
    report, own = assess(frame, references=[signature(shelf(0))], detections=20, usual_detections=20)
    assert report.passed, report
    assert report.reasons == []
    assert {"sharpness", "brightness", "shadows", "highlights", "glare", "changed_share"} <= report.scores.keys()


def test_blur_is_caught_absolutely_and_relative_to_the_camera():
    frame = shelf(0)
    blurred = frame.filter(ImageFilter.GaussianBlur(6))
    report, _ = assess(blurred)
    assert "blur" in report.reasons
    # A mild blur passes the absolute floor but not the comparison with the camera's sharp frames.
    mild = frame.filter(ImageFilter.GaussianBlur(1.2))
    alone, _ = assess(mild, config=QualityGateConfig(min_sharpness=1.0))
    assert "blur" not in alone.reasons
    against, _ = assess(mild, references=[signature(frame)], config=QualityGateConfig(min_sharpness=1.0))
    assert "blur" in against.reasons
    assert against.scores["relative_sharpness"] < 0.35


def test_under_and_over_exposure():
    array = np.asarray(shelf(1), np.float32)
    dark, _ = assess(Image.fromarray((array * 0.12).astype(np.uint8)))
    bright, _ = assess(Image.fromarray(np.clip(array * 3.0, 0, 255).astype(np.uint8)))
    assert "dark" in dark.reasons and "bright" not in dark.reasons
    assert "bright" in bright.reasons and "dark" not in bright.reasons


def test_a_glare_patch_is_glare_not_overexposure():
    array = np.asarray(shelf(2)).copy()
    array[40:140, 100:220] = 255  # a reflection: 120 x 100 saturated pixels, 8% of the frame
    report, _ = assess(Image.fromarray(array))
    assert report.reasons == ["glare"]
    assert report.scores["glare"] > 0.05
    clean, _ = assess(shelf(2))
    assert clean.scores["glare"] == 0.0


def test_an_obstruction_is_caught_against_the_cameras_frames_and_restocking_is_not():
    references = [signature(shelf(3)) for _ in range(3)]
    array = np.asarray(shelf(3)).copy()
    array[60:300, 150:300] = (40, 35, 30)  # a person-sized dark region
    obstructed, _ = assess(Image.fromarray(array), references=references)
    assert "obstructed" in obstructed.reasons
    assert obstructed.scores["changed_share"] > 0.2
    restocked = np.asarray(shelf(3)).copy()
    restocked[70:122, 40:70] = np.asarray(shelf(9))[70:122, 40:70]  # one facing replaced
    restocked[200:250, 400:430] = 30  # one facing sold out
    report, _ = assess(Image.fromarray(restocked), references=references)
    assert "obstructed" not in report.reasons, report
    # Without any reference the occlusion check cannot run: no score, no reason.
    alone, _ = assess(Image.fromarray(array))
    assert "changed_share" not in alone.scores and "obstructed" not in alone.reasons


def test_few_detections_against_the_shelfs_usual():
    report, _ = assess(shelf(4), detections=3, usual_detections=20)
    assert report.reasons == ["few_detections"]
    assert report.scores["detection_ratio"] == pytest.approx(0.15)
    fine, _ = assess(shelf(4), detections=15, usual_detections=20)
    assert fine.passed
    # A shelf that usually has almost nothing is not judged by its count.
    sparse, _ = assess(shelf(4), detections=0, usual_detections=2)
    assert sparse.passed
    later = detection_check(fine, detections=2, usual_detections=20)
    assert later.reasons == ["few_detections"] and not later.passed


def test_largest_region_counts_connected_cells_only():
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = mask[0, 2] = mask[2, 2] = True  # three isolated cells
    assert largest_region_share(mask) == pytest.approx(1 / 16)
    mask[1:3, 0:2] = True  # joined with (0, 0) and (2, 2): six cells
    assert largest_region_share(mask) == pytest.approx(6 / 16)
    assert largest_region_share(np.zeros((3, 3), bool)) == 0.0


def test_changes_are_brightness_free():
    frame = shelf(5)
    brighter = Image.fromarray(np.clip(np.asarray(frame, np.float32) * 1.3, 0, 255).astype(np.uint8))
    mask = changed_cells(signature(brighter).cells, signature(frame).cells, QualityGateConfig())
    assert mask.mean() < 0.05


def test_signature_round_trips_through_json():
    own = signature(shelf(6))
    again = FrameSignature.from_dict(own.as_dict())
    assert again.cells.shape == (16, 24, 4)
    assert np.allclose(again.cells, own.cells, atol=1e-4)
    assert again.sharpness == pytest.approx(own.sharpness, abs=1e-3)


def test_the_gate_config_refuses_an_unknown_key_by_name():
    assert QualityGateConfig.from_dict({"grid": [8, 12]}).grid == (8, 12)
    with pytest.raises(ValueError, match="max_glare_shar"):
        QualityGateConfig.from_dict({"max_glare_shar": 0.1})
