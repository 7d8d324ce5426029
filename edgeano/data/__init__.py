"""Image decoding, dataset layouts and the one `Preprocess` definition (numpy + OpenCV only)."""

from edgeano.data.images import IMAGE_SUFFIXES, list_images, read_image, to_bgr8
from edgeano.data.preprocess import Preprocess

__all__ = ["IMAGE_SUFFIXES", "list_images", "read_image", "to_bgr8", "Preprocess"]
