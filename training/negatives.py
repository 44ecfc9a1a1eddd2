"""Images that are not chest images, from files that Python packages ship (no download).

scikit-image's ``skimage/data`` folder (photographs, microscopy, astronomy,
text pages, a CT head phantom, drawings) and matplotlib's ``sample_data``
(a portrait, logos, an MRI head slice). They train the ``other`` class of the
input gate and test that it refuses photographs and documents. Colour images
are made greyscale (the decoder refuses colour anyway). The images are split
by name into a *fit* set and a *held-out* set so that the gate's refusal rate
is also measured on images it never saw.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
from PIL import Image

SKIMAGE_FILES = ("astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "chessboard_GRAY.png",
                 "clock_motion.png", "coffee.png", "coins.png", "color.png", "grass.png", "gravel.png",
                 "horse.png", "hubble_deep_field.jpg", "ihc.png", "logo.png", "microaneurysms.png", "moon.png",
                 "motorcycle_left.png", "page.png", "phantom.png", "retina.jpg", "rocket.jpg", "text.png")
MATPLOTLIB_FILES = ("grace_hopper.jpg", "logo2.png", "Minduka_Present_Blue_Pack.png", "s1045.ima.gz")
# never used to fit the gate: the refusal rate on these is the honest one
HELD_OUT = frozenset({"coffee.png", "page.png", "rocket.jpg", "moon.png", "grace_hopper.jpg",
                      "Minduka_Present_Blue_Pack.png", "s1045.ima.gz", "clock_motion.png"})


def skimage_data_dir() -> Path | None:
    try:
        import skimage
    except ImportError:
        return None
    return Path(skimage.__file__).parent / "data"


def matplotlib_data_dir() -> Path | None:
    try:
        import matplotlib
    except ImportError:
        return None
    return Path(matplotlib.__file__).parent / "mpl-data" / "sample_data"


def to_gray(image: Image.Image) -> np.ndarray:
    """Any PIL image -> float32 greyscale 0..255 (alpha composited on white)."""
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode in ("I", "I;16", "F"):
        values = np.asarray(image, dtype=np.float32)
        low, high = float(values.min()), float(values.max())
        return (values - low) * (255.0 / max(high - low, 1e-6))
    return np.asarray(image.convert("L"), dtype=np.float32)


def read_mri_slice(path: Path) -> np.ndarray:
    """matplotlib's s1045.ima.gz: a 256 x 256 big-endian 16-bit MRI slice."""
    values = np.frombuffer(gzip.decompress(path.read_bytes()), dtype=">u2").astype(np.float32)
    side = int(np.sqrt(values.size))
    values = values[: side * side].reshape(side, side)
    scaled: np.ndarray = (values - values.min()) * (255.0 / max(float(np.ptp(values)), 1e-6))
    return scaled


MAX_SIDE = 512


def _shrink(gray: np.ndarray) -> np.ndarray:
    """At most MAX_SIDE px on the longer side (the model sees 224 px anyway)."""
    height, width = gray.shape
    scale = MAX_SIDE / max(height, width)
    if scale >= 1:
        return gray
    image = Image.fromarray(np.clip(gray, 0, 255).astype(np.float32), "F")
    return np.asarray(image.resize((max(1, round(width * scale)), max(1, round(height * scale))),
                                   Image.Resampling.BILINEAR), dtype=np.float32)


def load_package_images() -> dict[str, np.ndarray]:
    """name -> greyscale float32 image (at most 512 px), for every listed file that is installed."""
    images: dict[str, np.ndarray] = {}
    for folder, names in ((skimage_data_dir(), SKIMAGE_FILES), (matplotlib_data_dir(), MATPLOTLIB_FILES)):
        if folder is None:
            continue
        for name in names:
            path = folder / name
            if not path.is_file():
                continue
            if name.endswith(".ima.gz"):
                images[name] = _shrink(read_mri_slice(path))
            else:
                images[name] = _shrink(to_gray(Image.open(io.BytesIO(path.read_bytes()))))
    return images


def encode_png(gray: np.ndarray) -> bytes:
    """The greyscale image as PNG bytes (what a user would upload)."""
    buffer = io.BytesIO()
    Image.fromarray(np.clip(gray + 0.5, 0, 255).astype(np.uint8), "L").save(buffer, format="PNG")
    return buffer.getvalue()


def make_variants(gray: np.ndarray, rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """The image itself, its negative, and random crops (30..90 % of each side), some inverted."""
    out = [gray, 255.0 - gray]
    height, width = gray.shape
    for _ in range(count):
        fraction = rng.uniform(0.3, 0.9)
        crop_h, crop_w = max(32, int(height * fraction)), max(32, int(width * rng.uniform(0.3, 0.9)))
        top = int(rng.integers(0, max(1, height - crop_h + 1)))
        left = int(rng.integers(0, max(1, width - crop_w + 1)))
        crop = gray[top:top + crop_h, left:left + crop_w]
        out.append(255.0 - crop if rng.random() < 0.25 else crop)
    return out
