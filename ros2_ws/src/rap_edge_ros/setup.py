"""ament_python build of rap_edge_ros (colcon runs it; see ros2_ws/README.md)."""

from setuptools import find_packages, setup

PACKAGE = "rap_edge_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="rap-edge maintainers",
    maintainer_email="rap-edge@example.invalid",
    description="ROS 2 adapters of rap-edge (the node wraps the rap_edge library)",
    license="Apache-2.0",
    entry_points={"console_scripts": []},
)
