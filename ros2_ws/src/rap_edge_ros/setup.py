"""ament_python build of rap_edge_ros (colcon runs it; see ros2_ws/README.md)."""

from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "rap_edge_ros"
HERE = Path(__file__).resolve().parent

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (
            f"share/{PACKAGE}/launch",
            sorted(str(p.relative_to(HERE)) for p in (HERE / "launch").glob("*.launch.py")),
        ),
        (
            f"share/{PACKAGE}/config",
            sorted(str(p.relative_to(HERE)) for p in (HERE / "config").glob("*.yaml")),
        ),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="rap-edge maintainers",
    maintainer_email="rap-edge@example.invalid",
    description="ROS 2 adapters of rap-edge (the node wraps the rap_edge library)",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "rap_edge_node = rap_edge_ros.node:main",
            "rap_edge_lifecycle_node = rap_edge_ros.node:main_lifecycle",
            "rap_edge_bringup = rap_edge_ros.bringup:main",
        ]
    },
)
