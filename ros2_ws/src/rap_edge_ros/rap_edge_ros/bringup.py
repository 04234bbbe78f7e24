"""Drive a lifecycle node's transitions, as ``ros2 lifecycle set`` does (no ros2cli needed).

    python -m rap_edge_ros.bringup                        # /rap_edge: configure, activate
    python -m rap_edge_ros.bringup --node /robot1/rap_edge deactivate cleanup
    python -m rap_edge_ros.bringup get                    # print the current state

Each transition (``configure``, ``activate``, ``deactivate``, ``cleanup``, ``shutdown``) is
requested through the node's ``~/change_state`` service in order; the state after each is
printed. Exit code 0 when every transition succeeded, 1 when one was refused or failed (the
node logs why, and a failed ``configure`` leaves it unconfigured), 2 when the node's lifecycle
services do not answer within ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.node import Node

__all__ = ["TRANSITIONS", "main", "set_states"]

TRANSITIONS = {
    "configure": Transition.TRANSITION_CONFIGURE,
    "activate": Transition.TRANSITION_ACTIVATE,
    "deactivate": Transition.TRANSITION_DEACTIVATE,
    "cleanup": Transition.TRANSITION_CLEANUP,
    "shutdown": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN,
}
# A shutdown is a different transition id from each primary state.
_SHUTDOWN_FROM = {
    "unconfigured": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN,
    "inactive": Transition.TRANSITION_INACTIVE_SHUTDOWN,
    "active": Transition.TRANSITION_ACTIVE_SHUTDOWN,
}


def _call(node: Node, client: Any, request: Any, timeout: float) -> Any:  # noqa: ANN401
    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
    if not future.done():
        msg = f"{client.srv_name} did not answer within {timeout:g} s"
        raise TimeoutError(msg)
    return future.result()


def set_states(
    node: Node,
    target: str,
    steps: list[str],
    timeout: float,
    out: Any = sys.stdout,  # noqa: ANN401
) -> bool:
    """Request ``steps`` of the lifecycle node ``target`` in order; print each state.

    Returns:
        True when every step succeeded.

    Raises:
        TimeoutError: when the node's lifecycle services do not answer.
    """
    get = node.create_client(GetState, f"{target}/get_state")
    change = node.create_client(ChangeState, f"{target}/change_state")
    for client in (get, change):
        if not client.wait_for_service(timeout_sec=timeout):
            msg = f"{client.srv_name} is not available within {timeout:g} s"
            raise TimeoutError(msg)

    def state() -> str:
        return str(_call(node, get, GetState.Request(), timeout).current_state.label)

    for step in steps:
        if step == "get":
            print(f"{target}: {state()}", file=out)
            continue
        request = ChangeState.Request()
        transition = TRANSITIONS[step]
        if step == "shutdown":
            transition = _SHUTDOWN_FROM.get(state(), transition)
        request.transition.id = transition
        ok = bool(_call(node, change, request, timeout).success)
        now = state()
        print(f"{target}: {step} {'ok' if ok else 'FAILED'}, now {now}", file=out)
        if not ok:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module notes)."""
    parser = argparse.ArgumentParser(prog="python -m rap_edge_ros.bringup", description=__doc__)
    parser.add_argument("--node", default="/rap_edge", help="the lifecycle node (/rap_edge)")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for each answer (60)"
    )
    parser.add_argument(
        "steps",
        nargs="*",
        metavar="STEP",
        help="configure, activate, deactivate, cleanup, shutdown or get, in order "
        "(default: configure activate)",
    )
    args = parser.parse_args(rclpy.utilities.remove_ros_args(argv or sys.argv)[1:])
    steps = args.steps or ["configure", "activate"]
    unknown = [step for step in steps if step not in TRANSITIONS and step != "get"]
    if unknown:
        parser.error(f"unknown step(s) {', '.join(unknown)}; use {', '.join(TRANSITIONS)} or get")
    rclpy.init(args=argv)
    node = Node("rap_edge_bringup")
    try:
        return 0 if set_states(node, args.node, steps, args.timeout) else 1
    except TimeoutError as err:
        sys.stderr.write(f"bringup: {err}\n")
        return 2
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
