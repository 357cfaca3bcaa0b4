"""docker-py's services and nodes APIs against Cove: create, inspect, scale, tasks, remove."""
import sys
import time

import docker
from docker.types import EndpointSpec, ServiceMode


def wait(what, f, secs=60):
    end = time.time() + secs
    while time.time() < end:
        if f():
            return
        time.sleep(0.2)
    sys.exit(f"timed out waiting for {what}")


def running(s):
    return [t for t in s.tasks() if t["DesiredState"] == "running" and t["Status"]["State"] == "running"]


c = docker.from_env()
nodes = c.nodes.list()
assert len(nodes) == 1 and nodes[0].attrs["Status"]["State"] == "ready", nodes
net = c.networks.create("pyov", driver="overlay", attachable=True)
s = c.services.create(
    "busybox", ["sleep", "600"], name="py", networks=["pyov"],
    mode=ServiceMode("replicated", replicas=2),
    endpoint_spec=EndpointSpec(mode="vip", ports={9090: 80}),
)
wait("2 running tasks", lambda: len(running(s)) == 2)
s.reload()
vips = s.attrs["Endpoint"]["VirtualIPs"]
assert len(vips) == 1 and vips[0]["NetworkID"] == net.id, vips
assert s.attrs["Spec"]["Mode"] == {"Replicated": {"Replicas": 2}}, s.attrs["Spec"]["Mode"]
assert s.attrs["Endpoint"]["Ports"][0]["PublishedPort"] == 9090, s.attrs["Endpoint"]
assert s.scale(3)
wait("3 running tasks", lambda: len(running(s)) == 3)
assert c.services.get("py").id == s.id
assert [x.name for x in c.services.list(filters={"name": "py"})] == ["py"]
s.remove()
# The low-level list: the high-level one inspects each container it lists, and one removed
# in between would be a 404 (docker-py's own race, also against Docker).
wait("the tasks to go", lambda: not c.api.containers(all=True, filters={"label": "com.docker.swarm.service.name=py"}))
net.remove()
print("services ok")
