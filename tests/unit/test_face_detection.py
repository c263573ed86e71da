"""RetinaFace: facexlib's weight layout loads strictly, anchors and decoding by hand, selection, crafted detectors
that find known faces, and the detector file's lookup, download and messages."""
from __future__ import annotations

import http.server
import math
import threading

import numpy as np
import pytest
import torch

from modules import face_detection
from tests.fixtures import faces as fixtures

CPU = torch.device("cpu")
SCORE = 1 / (1 + math.exp(-10))  # softmax of (0, 10): the beacons' score


@pytest.fixture(scope="module")
def beacons(tmp_path_factory):
    path = fixtures.write_beacon_detector(tmp_path_factory.mktemp("det") / "detection_mobilenet0.25_Final.pth",
                                 ("top_left", "bottom_right"))
    return face_detection.load_detector(str(path), CPU)


@pytest.mark.parametrize("backbone", ["mobilenet0.25", "resnet50"])
def test_our_modules_have_facexlibs_tensor_names_and_shapes(backbone):
    with torch.device("meta"):
        net = face_detection.RetinaFace(face_detection.CONFIGS[backbone])
    assert {key: tuple(value.shape) for key, value in net.state_dict().items()} == fixtures.retinaface_layout(backbone)


@pytest.mark.parametrize("prefix", ["module.", ""])
def test_a_mobilenet_file_in_facexlibs_layout_loads_strictly_with_every_tensor(tmp_path, prefix):
    path = fixtures.write_random_detector(tmp_path / "detection_mobilenet0.25_Final.pth", seed=3, prefix=prefix)
    detector = face_detection.load_detector(str(path), CPU)
    expected = fixtures.random_detector_state(seed=3)
    loaded = detector.net.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[key], expected[key]) for key in expected)
    assert detector.net.config.backbone == "mobilenet0.25"
    assert all(p.dtype == torch.float32 and p.device == CPU for p in detector.net.parameters())


def test_a_file_missing_a_tensor_or_of_another_model_is_refused_by_name(tmp_path):
    state = fixtures.random_detector_state()
    del state["LandmarkHead.2.conv1x1.bias"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match=r"(?s)broken.pth does not match RetinaFace mobilenet0.25: .*Missing .*"
                                         r"LandmarkHead.2.conv1x1.bias"):
        face_detection.load_detector(str(tmp_path / "broken.pth"), CPU)
    torch.save({"toRGB.0.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="other.pth is not a RetinaFace face detector"):
        face_detection.load_detector(str(tmp_path / "other.pth"), CPU)


def test_prior_boxes_by_hand():
    # levels of 4x8, 2x4 and 1x2 cells, 2 anchors each
    priors = face_detection.prior_boxes(32, 64, face_detection.CONFIGS["mobilenet0.25"])
    assert priors.shape == (4 * 8 * 2 + 2 * 4 * 2 + 1 * 2 * 2, 4)
    assert priors[0].tolist() == [4 / 64, 4 / 32, 16 / 64, 16 / 32]
    assert priors[1].tolist() == [4 / 64, 4 / 32, 32 / 64, 32 / 32]
    assert priors[2].tolist() == [12 / 64, 4 / 32, 16 / 64, 16 / 32]  # next column
    assert priors[16].tolist() == [4 / 64, 12 / 32, 16 / 64, 16 / 32]  # next row
    assert priors[64].tolist() == [8 / 64, 8 / 32, 64 / 64, 64 / 32]  # level 2 starts
    assert priors[-1].tolist() == [48 / 64, 16 / 32, 512 / 64, 512 / 32]


@pytest.mark.parametrize("backbone", ["mobilenet0.25", "resnet50"])
def test_the_heads_give_one_row_per_prior_at_odd_sizes(backbone):
    config = face_detection.CONFIGS[backbone]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = face_detection.RetinaFace(config).eval()
    with torch.inference_mode():
        boxes, scores, landmarks = net(torch.zeros(1, 3, 70, 90))
    rows = len(face_detection.prior_boxes(70, 90, config))
    assert (boxes.shape, scores.shape, landmarks.shape) == ((1, rows, 4), (1, rows, 2), (1, rows, 10))
    assert torch.allclose(scores.sum(dim=-1), torch.ones(1, rows))


def test_decoding_boxes_and_landmarks_by_hand():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    box = face_detection.decode_boxes(torch.tensor([[1.0, -1.0, 5 * math.log(2), 0.0]]), priors, (0.1, 0.2))
    # centre (0.5 + 0.1*0.2, 0.5 - 0.1*0.4), size (0.2*2, 0.4)
    assert box[0].tolist() == pytest.approx([0.32, 0.26, 0.72, 0.66], abs=1e-6)
    landmarks = face_detection.decode_landmarks(torch.tensor([[1.0, 2.0, 0, 0, -1, 0, 0, -2, 3, 1]]), priors, (0.1, 0.2))
    assert landmarks[0].tolist() == pytest.approx([0.52, 0.58, 0.5, 0.5, 0.48, 0.5, 0.5, 0.42, 0.56, 0.54], abs=1e-6)


def _landmarks(eye_distance: float, x: float = 0.0) -> list[float]:
    return [x, 0, x + eye_distance, 0, x, 5, x, 8, x + eye_distance, 8]


def test_select_faces_thresholds_suppresses_overlaps_and_drops_narrow_eyes():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [30, 30, 40, 40], [50, 50, 60, 60], [70, 70, 80, 80]],
                         dtype=torch.float32)
    scores = torch.tensor([0.98, 0.99, 0.975, 0.5, 0.999])
    landmarks = torch.tensor([_landmarks(6), _landmarks(6, 1), _landmarks(6, 30), _landmarks(6, 50), _landmarks(4, 70)])
    faces = face_detection.select_faces(boxes, scores, landmarks, conf_threshold=0.97, nms_threshold=0.4,
                                        eye_dist_threshold=5)
    # box 0 overlaps the better box 1 (IoU 9/11), box 3 is not confident, box 4's eyes are 4 px apart
    assert [face.box.tolist() for face in faces] == [[1, 0, 11, 10], [30, 30, 40, 40]]
    assert faces[0].score == pytest.approx(0.99)
    assert faces[1].landmarks.tolist() == [[30, 0], [36, 0], [30, 5], [30, 8], [36, 8]]


def _expected_beacon(cell_x: int, cell_y: int, width: int, height: int, resize: int):
    """Box and landmarks of a beacon at a stride-16 cell, in the pixels of a width x height image."""
    scale = min(width, height) / resize
    cx, cy = (cell_x + 0.5) * fixtures.BEACON_STEP * scale, (cell_y + 0.5) * fixtures.BEACON_STEP * scale
    half = fixtures.BEACON_ANCHOR / 2 * scale
    unit = 0.1 * fixtures.BEACON_ANCHOR * scale  # a landmark delta of 1 moves a point by variance x anchor side
    points = [[cx + dx * unit, cy + dy * unit] for dx, dy in fixtures.BEACON_LANDMARK_DELTAS]
    return [cx - half, cy - half, cx + half, cy + half], points


@pytest.mark.parametrize(("width", "height"), [(64, 64), (96, 64)])
def test_beacon_detector_finds_the_faces_it_was_made_for(beacons, width, height):
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    faces = sorted(beacons.detect(image, resize=320), key=lambda face: face.box[0])
    # at 320 px on the shorter side the stride-16 grid has 20 rows and 20 or 30 columns
    columns, rows = math.ceil(width * 320 / height / 16), 20
    expected = [_expected_beacon(fixtures.BEACON_CELL, fixtures.BEACON_CELL, width, height, 320),
                _expected_beacon(columns - 1 - fixtures.BEACON_CELL, rows - 1 - fixtures.BEACON_CELL, width, height, 320)]
    assert len(faces) == 2
    for face, (box, points) in zip(faces, expected):
        assert face.box.tolist() == pytest.approx(box, abs=1e-4)
        np.testing.assert_allclose(face.landmarks, points, atol=1e-4)
        assert face.score == pytest.approx(SCORE, abs=1e-6)


def test_detection_runs_at_640_pixels_by_default(beacons):
    faces = sorted(beacons.detect(np.zeros((64, 64, 3), np.uint8)), key=lambda face: face.box[0])
    box, points = _expected_beacon(fixtures.BEACON_CELL, fixtures.BEACON_CELL, 64, 64, 640)
    assert box == pytest.approx([0.8, 0.8, 13.6, 13.6])
    assert faces[0].box.tolist() == pytest.approx(box, abs=1e-4)
    np.testing.assert_allclose(faces[0].landmarks, points, atol=1e-4)
    assert faces[1].box.tolist() == pytest.approx([50.4, 50.4, 63.2, 63.2], abs=1e-4)


def test_a_detector_without_beacons_finds_nothing(tmp_path):
    torch.save(fixtures.beacon_detector_state(corners=()), tmp_path / "none.pth")
    detector = face_detection.load_detector(str(tmp_path / "none.pth"), CPU)
    assert detector.detect(np.full((32, 48, 3), 200, np.uint8), resize=64) == []


def test_the_resnet50_file_is_preferred_and_detector_files_are_not_restorers(tmp_path):
    fixtures.write_beacon_detector(tmp_path / face_detection.MOBILENET_FILE)
    assert face_detection.find_detector_file(str(tmp_path)) == str(tmp_path / face_detection.MOBILENET_FILE)
    (tmp_path / face_detection.RESNET50_FILE).write_bytes(b"")
    assert face_detection.find_detector_file(str(tmp_path)) == str(tmp_path / face_detection.RESNET50_FILE)
    assert face_detection.is_detector_file("/x/detection_Resnet50_Final.pth")
    assert face_detection.is_detector_file("parsing_parsenet.pth")
    assert not face_detection.is_detector_file("GFPGANv1.4.pth")


def test_missing_file_names_the_file_and_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError) as raised:
        face_detection.find_detector_file(str(tmp_path / "GFPGAN"), download=False)
    assert str(raised.value) == (
        f"Face detector file not found: face restoration needs detection_Resnet50_Final.pth (or "
        f"detection_mobilenet0.25_Final.pth) in {tmp_path / 'GFPGAN'}. Download it from {face_detection.DOWNLOAD_URL} "
        f"on a computer that is online and put it into that folder.")


def test_offline_download_gives_the_clear_message_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")  # an unreachable server, not the offline flag
    monkeypatch.setattr(face_detection, "DOWNLOAD_URL", "http://127.0.0.1:9/detection_Resnet50_Final.pth")
    with pytest.raises(FileNotFoundError, match=r"Face detector file not found: face restoration needs "
                                                r"detection_Resnet50_Final.pth .* in .*GFPGAN \(download from "
                                                r"http://127.0.0.1:9/detection_Resnet50_Final.pth failed: "):
        face_detection.get_detector(str(tmp_path / "GFPGAN"), CPU)
    assert not (tmp_path / "GFPGAN").exists()  # nothing is created unless the server answers with the file


def test_download_fetches_the_resnet50_file_once(tmp_path, monkeypatch):
    served = fixtures.write_beacon_detector(tmp_path / "served" / face_detection.RESNET50_FILE).read_bytes()
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(served)))
            self.end_headers()
            self.wfile.write(served)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.delenv("HF_HUB_OFFLINE")  # the tests' default: this one downloads from its own local server
        monkeypatch.setattr(face_detection, "DOWNLOAD_URL", f"http://127.0.0.1:{server.server_port}/file.pth")
        folder = tmp_path / "GFPGAN"
        detector = face_detection.get_detector(str(folder), CPU)
        again = face_detection.get_detector(str(folder), CPU)
    finally:
        server.shutdown()
        server.server_close()
    assert requests == ["/file.pth"]
    assert again is detector
    assert sorted(p.name for p in folder.iterdir()) == [face_detection.RESNET50_FILE]
    assert (folder / face_detection.RESNET50_FILE).read_bytes() == served


@pytest.mark.cuda
def test_on_cuda_detection_and_restoration_match_the_cpu(tmp_path):
    from modules import face_restoration_utils

    path = str(fixtures.write_beacon_detector(tmp_path / face_detection.MOBILENET_FILE, ("top_left", "bottom_right")))
    image = np.random.default_rng(4).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    results = {}
    for device in (CPU, torch.device("cuda")):
        detector = face_detection.load_detector(path, device)
        faces = sorted(detector.detect(image), key=lambda face: face.box[0])
        restored = face_restoration_utils.restore_with_face_helper(image, detector, lambda t: t.flip(-1).neg())
        results[device.type] = (faces, restored)
    (cpu_faces, cpu_image), (gpu_faces, gpu_image) = results["cpu"], results["cuda"]
    assert len(gpu_faces) == len(cpu_faces) == 2
    for ours, theirs in zip(gpu_faces, cpu_faces):
        np.testing.assert_allclose(ours.box, theirs.box, atol=1e-3)
        np.testing.assert_allclose(ours.landmarks, theirs.landmarks, atol=1e-3)
    assert not np.array_equal(cpu_image, image)
    assert np.abs(gpu_image.astype(int) - cpu_image).max() <= 1
