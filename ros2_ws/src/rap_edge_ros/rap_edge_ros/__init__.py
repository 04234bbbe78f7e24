"""ROS 2 adapters of rap-edge: message <-> rap_edge records; no recognition logic lives here.

:mod:`rap_edge_ros.convert` converts image messages' fields to and from the pipeline's BGR
arrays without ROS imports, so it is tested in plain Python.
"""
