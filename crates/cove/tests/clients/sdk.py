"""The Python `docker` SDK against Cove, in two phases.

`sdk.py up`: create a labelled network and a server container publishing 8090.
`sdk.py rest`: check what the SDK sees, run containers, connect/disconnect, errors, prune,
events, and remove everything `up` made. Exits non-zero with a message on any mismatch.
"""
import sys
import time

import docker
from docker.types import IPAMConfig, IPAMPool

c = docker.from_env(version="auto", timeout=60)
phase = sys.argv[1]


def expect_error(kind, status, needle, f):
    try:
        f()
    except kind as e:
        assert status is None or e.status_code == status, (status, e)
        assert needle in str(e), (needle, str(e))
        return
    raise AssertionError(f"no {kind.__name__} ({needle})")


if phase == "up":
    assert c.ping()
    assert c.version()["ApiVersion"] == "1.50"
    ipam = IPAMConfig(
        pool_configs=[IPAMPool(subnet="10.97.0.0/24", gateway="10.97.0.254")],
        options={"k": "v"},
    )
    net = c.networks.create(
        "sdknet", driver="bridge", labels={"suite": "sdk"}, ipam=ipam,
        attachable=True, check_duplicate=True,
    )
    assert net.attrs["IPAM"]["Config"][0]["Gateway"] == "10.97.0.254", net.attrs
    assert net.attrs["IPAM"]["Options"] == {"k": "v"}, net.attrs
    srv = c.containers.run(
        "busybox",
        ["sh", "-c", "echo ready; while true; do echo sdk-hello | nc -l -p 80; done"],
        name="sdksrv", detach=True, network="sdknet", ports={"80/tcp": 8090},
        labels={"suite": "sdk"},
    )
    for _ in range(100):
        if b"ready" in srv.logs():
            break
        time.sleep(0.05)
    print("up ok")
    sys.exit(0)

start = float(sys.argv[2])
net = c.networks.get("sdknet")
srv = c.containers.get("sdksrv")
assert srv.status == "running", srv.status
assert srv.attrs["NetworkSettings"]["Networks"]["sdknet"]["IPAddress"].startswith("10.97.0.")
assert srv.ports == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8090"}]}, srv.ports
assert srv.labels == {"suite": "sdk"}, srv.labels
assert [n.name for n in c.networks.list(filters={"label": "suite=sdk"})] == ["sdknet"]
assert [n.name for n in c.networks.list(names=["sdknet"])] == ["sdknet"]
assert srv.id in net.attrs["Containers"], net.attrs
listed = c.containers.list(filters={"label": "suite=sdk", "network": "sdknet", "status": "running"})
assert [x.name for x in listed] == ["sdksrv"], listed
assert srv.logs() == b"ready\n", srv.logs()
expect_error(docker.errors.APIError, 409, "already exists", lambda: c.networks.create("sdknet"))

# A container reaches the server by name; run() returns its output.
out = c.containers.run("busybox", ["nc", "-w", "3", "sdksrv", "80"], network="sdknet", remove=True)
assert out == b"sdk-hello\n", out
code, out = srv.exec_run(["hostname"])
assert code == 0 and out.strip() == srv.id[:12].encode(), (code, out)
top = srv.top()
assert "PID" in top["Titles"] and top["Processes"], top

other = c.containers.create("busybox", ["sleep", "60"], name="sdkother")
net.connect(other, aliases=["alt"], ipv4_address="10.97.0.77")
other.start()
other.reload()
assert other.attrs["NetworkSettings"]["Networks"]["sdknet"]["IPAddress"] == "10.97.0.77"
net.disconnect(other, force=True)
other.remove(force=True)

expect_error(docker.errors.NotFound, 404, "No such container: nosuch", lambda: c.containers.get("nosuch"))
expect_error(docker.errors.NotFound, 404, "network nosuchnet not found", lambda: c.networks.get("nosuchnet"))
expect_error(docker.errors.APIError, 403, "pre-defined", lambda: c.networks.get("bridge").remove())
expect_error(docker.errors.ImageNotFound, 404, "No such image", lambda: c.containers.run("nosuch:1", ["true"]))

srv.remove(force=True)
net.remove()
c.networks.create("sdkprune", labels={"gone": "yes"})
keep = c.networks.create("sdkkeep")
res = c.networks.prune(filters={"label": "gone=yes"})
assert res["NetworksDeleted"] == ["sdkprune"], res
keep.remove()

until = time.time() + 0.2
evs = list(c.events(since=start, until=until, decode=True, filters={"type": "network"}))
acts = [(e["Action"], e["Actor"]["Attributes"]["name"]) for e in evs]
for want in [("create", "sdknet"), ("connect", "sdknet"), ("disconnect", "sdknet"),
             ("destroy", "sdknet"), ("destroy", "sdkprune")]:
    assert want in acts, (want, acts)
cev = list(c.events(since=start, until=until, decode=True, filters={"container": "sdksrv"}))
got = [e["Action"] for e in cev if e["Action"] in ("create", "start", "die", "destroy")]
assert got == ["create", "start", "die", "destroy"], cev
assert all(e["Type"] == "container" and "timeNano" in e for e in cev), cev
print("sdk ok")
