"""ros.conversions: real sensor_msgs messages <-> numpy (Image, CompressedImage, CameraInfo,
PointCloud2), and reading the real rosbag recordings."""

import array
import time

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from joint_perception.geometry import backproject
from joint_perception.image_codec import ENCODINGS, ImageFormatError
from joint_perception.pointcloud import pack_organized, unpack_rgb
from joint_perception.ros import conversions

K_NYU = np.array([[518.8579, 0, 325.58245], [0, 519.46961, 253.73617], [0, 0, 1]])


def _header():
    h = Header()
    h.frame_id = "camera_color_optical_frame"
    h.stamp.sec, h.stamp.nanosec = 12, 345
    return h


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_image_roundtrip_every_encoding(encoding):
    info = ENCODINGS[encoding]
    shape = (3, 4) if info.channels == 1 else (3, 4, info.channels)
    rng = np.random.default_rng(0)
    if info.dtype.kind == "f":
        x = rng.standard_normal(shape).astype(np.float32)
        x[0, 0] = np.nan
    else:
        x = rng.integers(0, 200, shape).astype(info.dtype.newbyteorder("="))
    msg = conversions.array_to_image_msg(x, encoding, _header())
    assert isinstance(msg, Image) and isinstance(msg.data, array.array)
    assert (msg.height, msg.width, msg.encoding, msg.is_bigendian) == (3, 4, encoding, 0)
    assert msg.step == 4 * info.bytes_per_pixel and len(msg.data) == 3 * msg.step
    assert msg.header.frame_id == "camera_color_optical_frame" and msg.header.stamp.nanosec == 345
    y = conversions.image_msg_to_array(msg)
    assert np.array_equal(y, x, equal_nan=True) and y.dtype == x.dtype


def test_image_msg_to_rgb_and_errors():
    rgb = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(2, 4, 3)
    msg = conversions.array_to_image_msg(np.ascontiguousarray(rgb[..., ::-1]), "bgr8", _header())
    assert np.array_equal(conversions.image_msg_to_rgb(msg), rgb)
    msg.data = msg.data[:-1]
    with pytest.raises(ImageFormatError, match="data has 23 bytes, expected step 12"):
        conversions.image_msg_to_rgb(msg)
    with pytest.raises(ImageFormatError, match="needs dtype float32"):
        conversions.array_to_image_msg(rgb, "32FC1", _header())


def test_compressed_roundtrip():
    rgb = np.random.default_rng(3).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    msg = conversions.rgb_to_compressed_msg(rgb, _header(), "png")
    assert msg.format == "rgb8; png compressed bgr8"
    assert np.array_equal(conversions.compressed_msg_to_rgb(msg), rgb)


def _info(k=K_NYU, h=480, w=640):
    msg = CameraInfo()
    msg.header = _header()
    msg.height, msg.width = h, w
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = np.asarray(k, dtype=np.float64).reshape(-1)
    msg.r = np.eye(3).reshape(-1)
    msg.p = np.hstack([k, [[-25.9], [0], [0]]]).reshape(-1)  # stereo-like Tx
    return msg


def test_camera_info_to_K_and_errors():
    assert np.allclose(conversions.camera_info_to_K(_info()), K_NYU)
    with pytest.raises(ValueError, match="frame 'camera_color_optical_frame'.*all zeros"):
        conversions.camera_info_to_K(_info(np.zeros((3, 3))))
    bad = K_NYU.copy()
    bad[0, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        conversions.camera_info_to_K(_info(bad))


def test_distortion_flag():
    msg = _info()
    assert not conversions.camera_info_is_distorted(msg)
    msg.d = [0.1, 0.0, 0.0, 0.0, 0.0]
    assert conversions.camera_info_is_distorted(msg)
    msg.d = []
    assert not conversions.camera_info_is_distorted(msg)


def test_scaled_camera_info_hand_values():
    out = conversions.scaled_camera_info(_info(), 240, 320)
    assert (out.height, out.width) == (240, 320)
    assert out.header.frame_id == "camera_color_optical_frame" and out.header.stamp.sec == 12
    k = out.k.reshape(3, 3)
    assert k[0, 0] == pytest.approx(259.42895) and k[1, 1] == pytest.approx(259.734805)
    assert k[0, 2] == pytest.approx(162.541225) and k[1, 2] == pytest.approx(126.618085)
    p = out.p.reshape(3, 4)
    assert np.allclose(p[:, :3], k) and p[0, 3] == pytest.approx(-12.95)
    assert out.distortion_model == "plumb_bob" and list(out.d) == [0.0] * 5
    assert (out.roi.width, out.binning_x) == (0, 0)


def test_scaled_camera_info_with_roi_and_binning():
    msg = _info()
    msg.binning_x = msg.binning_y = 2
    msg.roi.x_offset, msg.roi.y_offset, msg.roi.width, msg.roi.height = 100, 40, 400, 320
    assert conversions.camera_info_image_size(msg) == (160, 200)
    k = conversions.camera_info_to_K(msg)
    assert np.allclose(k[0], [518.8579 / 2, 0, (325.58245 - 100) / 2])
    assert np.allclose(k[1], [0, 519.46961 / 2, (253.73617 - 40) / 2])
    out = conversions.scaled_camera_info(msg, 160, 200)  # same size: only ROI/binning folded in
    assert np.allclose(out.k.reshape(3, 3), k)


def test_make_camera_info():
    msg = conversions.make_camera_info(K_NYU, 480, 640, _header())
    assert np.allclose(conversions.camera_info_to_K(msg), K_NYU)
    assert np.allclose(msg.p.reshape(3, 4)[:, 3], 0) and not conversions.camera_info_is_distorted(
        msg
    )


def test_cloud_msg_roundtrip():
    depth = np.full((6, 8), 2.0, np.float32)
    depth[0, 0] = np.nan
    pts = backproject(depth, K_NYU)
    rgb = np.random.default_rng(4).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    labels = np.arange(48, dtype=np.uint8).reshape(6, 8)
    msg = conversions.cloud_to_msg(pack_organized(pts, rgb, labels, decimation=2), _header())
    assert isinstance(msg, PointCloud2) and (msg.height, msg.width) == (3, 4)
    assert msg.fields[3].name == "rgb" and msg.fields[3].datatype == PointField.FLOAT32
    assert msg.fields[4].datatype == PointField.UINT32 and msg.point_step == 20
    assert not msg.is_dense and msg.row_step == 80 and len(msg.data) == 240
    out = conversions.msg_to_cloud_arrays(msg)
    assert np.isnan(out["z"][0, 0]) and np.allclose(out["z"][1:], 2.0)
    assert np.array_equal(unpack_rgb(out["rgb"]), rgb[::2, ::2])
    assert np.array_equal(out["label"], labels[::2, ::2])


def test_real_bag_messages(shared_data):
    from rosbags.highlevel import AnyReader

    bag = shared_data / "bags" / "nyuv2_test3_sqlite3"
    first = {}
    with AnyReader([bag]) as reader:
        for conn, _, raw in reader.messages():
            if conn.topic not in first:
                first[conn.topic] = reader.deserialize(raw, conn.msgtype)
    img = first["/camera/color/image_raw"]
    rgb = conversions.image_msg_to_rgb(img)
    ref = cv2.cvtColor(cv2.imread(str(shared_data / "nyuv2_test/rgb/0001.png")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(rgb, ref)
    jpeg = conversions.compressed_msg_to_rgb(first["/camera/color/image_raw/compressed"])
    assert np.abs(jpeg.astype(np.float32) - ref).mean() < 4.0
    assert np.allclose(conversions.camera_info_to_K(first["/camera/color/camera_info"]), K_NYU)
    depth = conversions.image_msg_to_array(first["/camera/aligned_depth_to_color/image_raw"])
    ref_d = cv2.imread(str(shared_data / "nyuv2_test/depth_mm/0001.png"), cv2.IMREAD_UNCHANGED)
    assert depth.dtype == np.uint16 and np.array_equal(depth, ref_d)


@pytest.mark.perf
def test_message_building_640x480_is_fast():
    rgb = np.zeros((480, 640, 3), np.uint8)
    times = []
    for _ in range(10):
        t = time.process_time()
        conversions.array_to_image_msg(rgb, "rgb8", _header())
        times.append(time.process_time() - t)
    assert min(times) < 0.002  # one memcpy of 0.9 MB (~0.1 ms measured)


def _round_trip(msg):
    """Every field of ``msg`` after serialising and deserialising it (CDR padding bytes are
    not initialised, so the serialised bytes themselves are not compared)."""
    from rclpy.serialization import deserialize_message, serialize_message

    back = deserialize_message(serialize_message(msg), type(msg))
    return {f: repr(getattr(back, f)) for f in back.get_fields_and_field_types()}


def test_messages_over_reused_buffers_serialise_like_the_copying_builders():
    """Issue 13: outputs written into OutputBuffers are published without a copy, and the
    serialised bytes equal those of the copying builders."""
    from std_msgs.msg import Header

    from joint_perception.buffers import OutputBuffers
    from joint_perception.pointcloud import pack_depth

    header = Header(frame_id="cam")
    header.stamp.sec = 5
    buffers = OutputBuffers()
    rng = np.random.default_rng(0)
    depth = buffers.array("depth", (48, 64), np.float32)
    depth[:] = rng.uniform(0.5, 5.0, depth.shape)
    color = buffers.array("color", (48, 64, 3), np.uint8)
    color[:] = rng.integers(0, 256, color.shape)
    msg = None
    for arr, name, enc in ((depth, "depth", "32FC1"), (color, "color", "rgb8")):
        msg = conversions.image_msg_over_buffer(arr, buffers.storage(name), enc, header)
        assert msg.data is buffers.storage(name)
        assert _round_trip(msg) == _round_trip(conversions.array_to_image_msg(arr, enc, header))
    again = conversions.image_msg_over_buffer(color, buffers.storage("color"), "rgb8", header, msg)
    assert again is msg
    with pytest.raises(ImageFormatError):
        conversions.image_msg_over_buffer(depth, buffers.storage("depth"), "rgb8", header)
    K = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    packed = pack_depth(depth, K, color, None, buffers=buffers)
    cloud = conversions.cloud_msg_over_buffer(packed, buffers.storage("points"), header)
    assert cloud.data is buffers.storage("points")
    assert _round_trip(cloud) == _round_trip(
        conversions.cloud_to_msg(pack_depth(depth, K, color), header)
    )


def test_scaled_camera_info_cache_recomputes_only_when_the_calibration_changes():
    from std_msgs.msg import Header

    info = conversions.make_camera_info(
        np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]]), 480, 640, Header()
    )
    cache = conversions.ScaledCameraInfoCache()
    h1, h2 = Header(frame_id="a"), Header(frame_id="b")
    first = cache.get(info, None, 240, 320, h1)
    assert list(first.k) == list(conversions.scaled_camera_info(info, 240, 320).k)
    second = cache.get(info, None, 240, 320, h2)
    assert second is first and second.header.frame_id == "b"
    info.k[0] = 600.0
    third = cache.get(info, None, 240, 320, h1)
    assert third is not first and third.k[0] == conversions.scaled_camera_info(info, 240, 320).k[0]
    assert third.k[0] != first.k[0]
