"""Letterbox, decode and NMS: the numpy/OpenCV path shared by Keras, TFLite, server and edge."""

import numpy as np

from mlkit.models.postprocess import Letterbox, decode_boxes, grid_centers, letterbox, nms, postprocess


def test_letterbox_keeps_aspect_and_pads_right_bottom():
    img = np.full((384, 512, 3), 200, np.uint8)
    out, lb = letterbox(img, 320, 256)
    assert out.shape == (256, 320, 3)
    assert lb.scale == 320 / 512
    assert (out[:240] == 200).all() and (out[240:] == 114).all()


def test_decode_inverts_the_encoding():
    centers = grid_centers(2, 3, 8)
    assert centers.tolist()[:3] == [[4, 4], [12, 4], [20, 4]]
    box = np.array([10.0, 2.0, 30.0, 12.0])
    cx, cy, w, h = 20.0, 7.0, 20.0, 10.0
    c = centers[2]  # (20, 4)
    reg = np.array([[(cx - c[0]) / 8, (cy - c[1]) / 8, np.log(w / 8), np.log(h / 8)]])
    np.testing.assert_allclose(decode_boxes(reg, c[None], 8)[0], box, atol=1e-5)


def test_nms_is_class_aware_and_sorted():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.zeros((4, 3), np.float32)
    scores[0, 0], scores[1, 0], scores[2, 1], scores[3, 0] = 0.9, 0.8, 0.7, 0.4
    det = nms(boxes, scores, score_threshold=0.3, iou_threshold=0.5)
    # box 1 overlaps box 0 of the same class and goes; box 2 is another class and stays
    assert det.labels.tolist() == [0, 1, 0]
    assert det.scores.tolist() == sorted(det.scores.tolist(), reverse=True)
    assert len(nms(boxes, scores, 0.95, 0.5)) == 0


def test_postprocess_maps_back_to_original_pixels():
    centers = grid_centers(1, 1, 8)
    reg = np.array([[0.0, 0.0, np.log(2.0), np.log(2.0)]], np.float32)  # 16x16 box centred at (4, 4)
    scores = np.array([[0.0, 0.9]], np.float32)
    det = postprocess(reg, scores, centers, 8, Letterbox(0.5, 100, 100))
    np.testing.assert_allclose(det.boxes[0], [0, 0, 24, 24])  # (-4..12)/0.5, clipped at 0
    assert det.labels.tolist() == [1]


def test_shrink_matches_an_area_resize_closely_and_exactly_at_integer_factors():
    import cv2

    from mlkit.data.synthetic.scene import render_scene
    from mlkit.data.synthetic.sites import SITES
    from mlkit.models.postprocess import shrink

    image = render_scene(np.random.default_rng(5), SITES["A"])[0]
    h, w = image.shape[:2]
    for size in ((w // 2, h // 2), (round(w * 0.7), round(h * 0.7)), (round(w * 0.4), round(h * 0.4))):
        got = shrink(image, *size)
        want = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        assert got.shape == want.shape
        diff = np.abs(got.astype(int) - want).mean()
        if size == (w // 2, h // 2):
            assert diff == 0  # an integer factor is the box filter itself
        else:
            assert diff < 3.0, (size, diff)  # grey levels, out of 255
