# shellcheck shell=bash
# Source me (bash): the environment for running what scripts/ros_build.sh built in ros2_ws/.
#
#   source scripts/ros_env.sh
#
# Activates ros2_ws/.venv (the ROS 2 Jazzy wheels and rap-edge), makes it the only ROS prefix,
# sources ros2_ws/install/setup.bash, and confines DDS to loopback as far as configuration can:
# the Fast DDS profile ros2_ws/fastdds-lo.xml (both variable names: Fast DDS 2.x reads FASTRTPS_*,
# 3.x reads FASTDDS_*), ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, no static peers, and
# ROS_DOMAIN_ID 42 unless already set. That is not a sandbox: start DDS participants only through
# scripts/netns_run.sh, which runs them in a network namespace that holds nothing but lo.
# Returns 1 with a message when the workspace is not built.

_rap_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_rap_ws=$_rap_root/ros2_ws
if [[ ! -x $_rap_ws/.venv/bin/python || ! -f $_rap_ws/install/setup.bash ]]; then
  echo "ros_env.sh: ros2_ws is not built ($_rap_ws/.venv or install/setup.bash is missing);" \
    "run scripts/ros_build.sh first" >&2
  unset _rap_root _rap_ws
  return 1 2>/dev/null || exit 1
fi

# shellcheck source=/dev/null
source "$_rap_ws/.venv/bin/activate"
export AMENT_PREFIX_PATH=$_rap_ws/.venv CMAKE_PREFIX_PATH=$_rap_ws/.venv
unset COLCON_PREFIX_PATH
# shellcheck source=/dev/null
source "$_rap_ws/install/setup.bash"
# ament_python puts console scripts (rap_edge_node) in lib/<package>, which is not on PATH.
export PATH=$_rap_ws/install/rap_edge_ros/lib/rap_edge_ros:$PATH

export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
export FASTRTPS_DEFAULT_PROFILES_FILE=$_rap_ws/fastdds-lo.xml
export FASTDDS_DEFAULT_PROFILES_FILE=$_rap_ws/fastdds-lo.xml
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-42}
# Peers elsewhere, the deprecated switch (it overrides the range when set) and a transport
# override would each undo the loopback profile.
unset ROS_STATIC_PEERS ROS_LOCALHOST_ONLY FASTDDS_BUILTIN_TRANSPORTS
unset _rap_root _rap_ws
