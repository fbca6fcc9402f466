"""ament_python / pip build script for joint_perception.

`colcon build` (ament_python) and `pip install -e .[ros,train,test]` both use this file.
ROS 2 dependencies come from package.xml on a robot (rosdep); the ``ros`` extra installs the
ROS 2 Kilted wheels from the package index for development machines and CI.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "joint_perception"

# torch is pinned: a bare requirement pulls several GB of CUDA wheels on x86 (docs/contracts.md section 6).
TORCH = "torch==2.13.0"

CORE = [
    "numpy>=1.24",
    "opencv-python-headless>=4.8",
    # PNG/JPEG header (size, format) without decoding: the input size limit (image_codec.py)
    "pillow>=10",
    "pyyaml>=6.0",
    "tqdm>=4.60",
    "onnx>=1.16",
    "onnxruntime>=1.18",
    "rosbags>=0.10",
    "matplotlib>=3.7",
    "psutil>=5.9",
]
ROS = [
    "ros-kilted-rclpy",
    "ros-kilted-sensor-msgs",
    "ros-kilted-std-msgs",
    "ros-kilted-diagnostic-msgs",
    "ros-kilted-rmw-fastrtps-cpp",
    "ros-kilted-rcl-interfaces",
    "ros-kilted-lifecycle-msgs",
    "ros-kilted-ament-index-python",
]
TRAIN = [
    TORCH,
    "lightning>=2.2",
    "omegaconf>=2.4",
    "tensorboard>=2.14",
    "h5py>=3.9",
    "scipy>=1.11",
    # TFLite flatbuffers -> torch weights (models/tflite_import.py)
    "tflite>=2.18",
    "flatbuffers>=24.3.25",
]
# TensorRT engines: the FP16 ONNX graph a strongly typed FP16 engine is built from
# (runtime/onnx_precision.py). TensorRT itself comes from JetPack or `pip install tensorrt`
# (docs/deploy_gpu.md), not from here.
TENSORRT = ["onnxconverter-common>=1.16"]
# ai-edge-litert: the TFLite interpreter, reference in test/test_tflite_import.py only;
# colcon-core/-python-setup-py/-ros: `colcon build` of the package as robots do
# (test/test_colcon_build.py)
TEST = [
    "pytest>=8",
    "pytest-timeout>=2.2",
    "ruff>=0.5",
    "ai-edge-litert>=2.3",
    "torchmetrics>=1.3",
    "colcon-core>=0.15",
    "colcon-python-setup-py>=0.2.8",
    "colcon-ros>=0.4",
]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz")),
        (f"share/{PACKAGE}/config/train", glob("config/train/*.yaml")),
        (f"share/{PACKAGE}/config/train/ablation", glob("config/train/ablation/*.yaml")),
    ]
    + [
        # shipped models: models/<name>/{model.onnx, model.pt, metadata.json}
        (f"share/{PACKAGE}/{d}", glob(f"{d}/*"))
        for d in sorted(glob("models/*"))
        if glob(f"{d}/metadata.json")
    ],
    python_requires=">=3.10",
    install_requires=["setuptools"],
    extras_require={
        "core": CORE,
        "ros": ROS,
        "train": TRAIN,
        "test": TEST,
        "tensorrt": TENSORRT,
        "all": CORE + ROS + TRAIN + TENSORRT + TEST,
    },
    package_data={"joint_perception.ros": ["fastdds_loopback.xml"]},
    zip_safe=False,
    maintainer="joint_perception maintainers",
    maintainer_email="maintainers@joint-perception.dev",
    description="Monocular depth, semantics, normals and point clouds for ROS 2 with TensorRT.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "perception_node = joint_perception.ros.cli:main",
            "replay = joint_perception.evaluation.replay:main",
            "benchmark = joint_perception.evaluation.benchmark:main",
            "train = joint_perception.export.train_command:main",
            "evaluate = joint_perception.evaluation.evaluate:main",
            "export_onnx = joint_perception.export.onnx_export:main",
            "export_engine = joint_perception.export.export_engine:main",
            "make_synthetic_bag = joint_perception.data.synthetic_bag:main",
        ],
    },
)
