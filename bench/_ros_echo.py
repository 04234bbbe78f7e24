"""A do-nothing stand-in for the rap-edge node (``bench/ros_node.py --echo``): it receives each
Image with the same QoS, turns it into a numpy BGR array as the node does, and answers with an
empty RecognitionArray carrying the frame's header. What it costs is the floor that ROS 2
transport and rclpy put under any node here, with no recognition at all.
"""

from __future__ import annotations

import signal
import sys
import threading

import rclpy
from rap_edge_msgs.msg import RecognitionArray
from rap_edge_ros.convert import image_to_bgr
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image


def main() -> int:
    rclpy.init()
    node = rclpy.create_node("rap_edge")
    pub = node.create_publisher(RecognitionArray, "~/recognitions", QoSProfile(depth=10))

    def on_image(msg: Image) -> None:
        image_to_bgr(
            msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian), msg.data
        )
        out = RecognitionArray()
        out.header = msg.header
        out.timing_names, out.timing_ms = ["total", "queue"], [0.0, 0.0]
        pub.publish(out)

    node.create_subscription(Image, sys.argv[1], on_image, qos_profile_sensor_data)
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    stop.wait()
    executor.shutdown()
    rclpy.try_shutdown()
    spin.join(5)
    node.destroy_node()
    return 0


if __name__ == "__main__":
    sys.exit(main())
