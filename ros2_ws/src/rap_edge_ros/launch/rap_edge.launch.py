# ruff: noqa: INP001 (a launch file, not a module of a package)
"""Launch the rap-edge node with config/params.yaml (apt ROS 2 Humble or Jazzy).

    ros2 launch rap_edge_ros rap_edge.launch.py memory:=/path/to/memory
    ros2 launch rap_edge_ros rap_edge.launch.py params_file:=/path/to/my_params.yaml \
        namespace:=robot1

Arguments: ``params_file`` (default: the installed config/params.yaml), ``memory`` (overrides
the file's ``memory`` when given), ``namespace`` (topics become /<namespace>/rap_edge/...),
``log_level``, ``lifecycle`` (``true``: run the managed node ``rap_edge_lifecycle_node``) and
``autostart`` (with ``lifecycle``; ``true`` by default: it configures and activates itself,
``false`` leaves that to a lifecycle manager or ``ros2 lifecycle set``). A camera driver is
started separately (usb_cam, v4l2_camera, ...); point
``image_topics`` in the parameters file at its topic, or remap.

The pip wheels used to build ros2_ws on a plain machine have no launch or launch_ros, so this
file is only run where ROS 2 is installed with apt; it uses nothing but their stable API.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def _node(context, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202, ARG001
    parameters = [LaunchConfiguration("params_file").perform(context)]
    memory = LaunchConfiguration("memory").perform(context)
    if memory:
        parameters.append({"memory": memory})
    lifecycle = LaunchConfiguration("lifecycle").perform(context).lower() == "true"
    if lifecycle:
        autostart = LaunchConfiguration("autostart").perform(context).lower() == "true"
        parameters.append({"autostart": autostart})
    return [
        Node(
            package="rap_edge_ros",
            executable="rap_edge_lifecycle_node" if lifecycle else "rap_edge_node",
            name="rap_edge",
            namespace=LaunchConfiguration("namespace"),
            parameters=parameters,
            arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
            output="screen",
            emulate_tty=True,
        )
    ]


def generate_launch_description():  # noqa: ANN201, D103
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=PathJoinSubstitution(
                    [FindPackageShare("rap_edge_ros"), "config", "params.yaml"]
                ),
                description="parameters file of the node",
            ),
            DeclareLaunchArgument(
                "memory",
                default_value="",
                description="rap-edge memory folder (overrides the parameters file when given)",
            ),
            DeclareLaunchArgument(
                "namespace", default_value="", description="namespace of the node"
            ),
            DeclareLaunchArgument(
                "log_level", default_value="info", description="debug, info, warn, error or fatal"
            ),
            DeclareLaunchArgument(
                "lifecycle",
                default_value="false",
                description="true: the managed (lifecycle) node rap_edge_lifecycle_node",
            ),
            DeclareLaunchArgument(
                "autostart",
                default_value="true",
                description="with lifecycle:=true, configure and activate at start",
            ),
            OpaqueFunction(function=_node),
        ]
    )
