"""The tiny YOLO's test scene: red (class 0) and green (class 1) blocks on its 4x4 grid of a 64x64 image (16 px cells).
A helper module (tests/models is not a package), imported as ``from blocks import PLACES``."""

PLACES = [((16, 0, 32, 16), (48, 32, 64, 48)), ((0, 16, 16, 32), (32, 48, 48, 64)), ((32, 32, 48, 48), (0, 0, 16, 16))]
