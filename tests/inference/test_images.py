import io

import pytest
from PIL import Image, ImageOps

from inference.images import ImageError, crop_boxes, image_size, open_image
from tests.factories import shelf_image

RED, BLUE, GREY = (255, 0, 0), (0, 0, 255), (128, 128, 128)
EXIF_ORIENTATION = 0x0112


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _rotated_jpeg() -> bytes:
    """A 40x20 pixel grid, red left half and blue right half, tagged 'rotate 90° clockwise to view'."""
    image = Image.new("RGB", (40, 20), RED)
    image.paste(BLUE, (20, 0, 40, 20))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif, quality=95)
    return buffer.getvalue()


def test_the_exif_fixture_really_asks_for_a_rotation():
    # Guards the tests below: a viewer honouring EXIF would show this image 20x40.
    with Image.open(io.BytesIO(_rotated_jpeg())) as image:
        assert image.getexif()[EXIF_ORIENTATION] == 6
        assert ImageOps.exif_transpose(image).size == (20, 40)


def test_open_image_ignores_exif_orientation():
    image = open_image(_rotated_jpeg())
    assert image.size == (40, 20)
    assert image.mode == "RGB"
    # The raw grid: red on the left, blue on the right (a rotation would put them top/bottom).
    left, right = image.getpixel((5, 10)), image.getpixel((35, 10))
    assert left[0] > 200 and left[2] < 60
    assert right[2] > 200 and right[0] < 60


def test_image_size_ignores_exif_orientation():
    assert image_size(_rotated_jpeg()) == (40, 20)


@pytest.mark.parametrize("kind", ["bytes", "path", "str", "file"])
def test_open_image_and_image_size_accept_bytes_paths_and_files(tmp_path, kind):
    data = shelf_image((64, 48))
    path = tmp_path / "frame.jpg"
    path.write_bytes(data)
    sources = {"bytes": lambda: data, "path": lambda: path, "str": lambda: str(path), "file": lambda: io.BytesIO(data)}
    source = sources[kind]
    assert open_image(source()).size == (64, 48)
    assert image_size(source()) == (64, 48)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_open_image_converts_to_rgb(mode):
    image = open_image(_png(Image.new(mode, (7, 5))))
    assert image.mode == "RGB"
    assert image.size == (7, 5)


def _truncated_jpeg() -> bytes:
    data = shelf_image((320, 160), [((10, 10, 100, 100), 0), ((150, 20, 120, 120), 2)])
    return data[: len(data) * 2 // 3]


@pytest.mark.parametrize("data", [b"", b"this is not an image", b"\xff\xd8\xff\xe0garbage"],
                         ids=["empty", "text", "header"])
@pytest.mark.parametrize("read", [open_image, image_size], ids=["open_image", "image_size"])
def test_non_images_raise_image_error(read, data):
    with pytest.raises(ImageError, match="not a readable image"):
        read(data)


@pytest.mark.parametrize("read", [open_image, image_size], ids=["open_image", "image_size"])
def test_a_truncated_jpeg_raises_image_error(read):
    data = _truncated_jpeg()
    with Image.open(io.BytesIO(data)) as header_only:
        assert header_only.size == (320, 160)  # the header alone looks fine: only decoding tells
    with pytest.raises(ImageError):
        read(data)


def test_image_error_is_a_value_error():
    with pytest.raises(ValueError):
        image_size(b"nope")


def test_unreadable_file_on_disk_raises_image_error(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"not really a jpeg")
    with pytest.raises(ImageError):
        open_image(path)
    with pytest.raises(ImageError):
        image_size(path)


@pytest.fixture
def canvas() -> Image.Image:
    """100x50 grey with a red block at x 20..49, y 10..29 and a blue block at x 70..89, y 30..44."""
    image = Image.new("RGB", (100, 50), GREY)
    image.paste(RED, (20, 10, 50, 30))
    image.paste(BLUE, (70, 30, 90, 45))
    return image


def _colours(image: Image.Image) -> set:
    return {colour for _, colour in image.getcolors(maxcolors=image.width * image.height)}


def test_crop_boxes_cuts_exactly_the_box(canvas):
    red, blue = crop_boxes(canvas, [(20, 10, 30, 20), (70, 30, 20, 15)])
    assert red.size == (30, 20)
    assert _colours(red) == {RED}
    assert blue.size == (20, 15)
    assert _colours(blue) == {BLUE}


def test_crop_boxes_keeps_the_pixel_grid_of_a_partial_box(canvas):
    (crop,) = crop_boxes(canvas, [(15, 5, 10, 10)])
    assert crop.size == (10, 10)
    assert crop.getpixel((4, 4)) == GREY  # x 19, y 9: just outside the red block
    assert crop.getpixel((5, 5)) == RED  # x 20, y 10: its corner
    assert crop.getpixel((4, 5)) == GREY
    assert crop.getpixel((5, 4)) == GREY


def test_crop_boxes_returns_one_crop_per_box_in_order(canvas):
    boxes = [(70, 30, 20, 15), (20, 10, 30, 20), (70, 30, 20, 15)]
    assert [_colours(c) for c in crop_boxes(canvas, boxes)] == [{BLUE}, {RED}, {BLUE}]
    assert crop_boxes(canvas, []) == []


@pytest.mark.parametrize("box, size", [
    ((-10, -5, 40, 30), (30, 25)),  # over the top-left corner
    ((90, 40, 50, 50), (10, 10)),  # over the bottom-right corner
    ((-20, -20, 200, 200), (100, 50)),  # larger than the image
    ((200, 200, 10, 10), (1, 1)),  # entirely outside: a 1x1 crop at the edge
    ((-30, -30, 10, 10), (1, 1)),
    ((30, 20, 0, 0), (1, 1)),  # degenerate
    ((30, 20, -5, 4), (1, 4)),  # negative width
    ((10.4, 10.6, 5.2, 4.4), (6, 4)),  # rounded: 10..16 x 11..15
])
def test_crop_boxes_clamps_to_the_image(canvas, box, size):
    (crop,) = crop_boxes(canvas, [box])
    assert crop.size == size


def test_clamped_crop_holds_the_pixels_inside_the_image(canvas):
    (crop,) = crop_boxes(canvas, [(60, 25, 100, 100)])  # clamped to x 60..99, y 25..49
    assert crop.size == (40, 25)
    assert crop.getpixel((10, 5)) == BLUE  # x 70, y 30
    assert crop.getpixel((29, 19)) == BLUE  # x 89, y 44
    assert crop.getpixel((30, 19)) == GREY  # x 90
    assert crop.getpixel((0, 0)) == GREY


def test_outside_crop_is_the_nearest_edge_pixel(canvas):
    (crop,) = crop_boxes(canvas, [(500, 35, 10, 10)])
    assert crop.size == (1, 10)
    assert crop.getpixel((0, 0)) == canvas.getpixel((99, 35))
