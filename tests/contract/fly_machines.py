"""Fly Machines as fly_server.py keeps them: state, events, and a local process per machine."""

import base64
import copy
import datetime
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time

WAIT_LIMIT_SECONDS = 60  # flaps' proxy cuts waits off at 60 s (fly-go clamps to the same)
RESERVED_METADATA = {"fly_platform_version": "v2"}  # what flyd adds to every machine
DEFAULT_REGION = "iad"


class ApiError(Exception):
    def __init__(self, status, error, code=None):
        super().__init__(error)
        self.status, self.body = status, {"error": error}
        if code:
            self.body["status"] = code


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_ms():
    return int(time.time() * 1000)


ULID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid():
    return "".join(secrets.choice(ULID_ALPHABET) for _ in range(26))


class Machine:
    def __init__(self, app, machine_id, name, region, config, private_ip):
        self.app, self.id, self.name, self.region = app, machine_id, name, region
        self.config, self.private_ip = config, private_ip
        self.state = "created"
        self.version = ulid()
        self.created_at = self.updated_at = now_rfc3339()
        self.events = []  # newest first, as the API lists them
        self.process = None
        self.requested_stop = False
        self.restarts = 0
        self.log = None

    def event(self, kind, status, request=None, source="flyd"):
        event = {"id": ulid(), "type": kind, "status": status, "source": source, "timestamp": now_ms()}
        if request is not None:
            event["request"] = request
        self.events.insert(0, event)

    def to_json(self, summary=False):
        out = {"id": self.id, "name": self.name, "state": self.state, "region": self.region,
               "instance_id": self.version, "version": self.version, "private_ip": self.private_ip,
               "created_at": self.created_at, "updated_at": self.updated_at,
               "image_ref": image_ref(self.config.get("image", ""))}
        if not summary:
            out["config"] = self.config
            out["events"] = self.events
            out["host_status"] = "ok"
        return out


def image_ref(image):
    repository, _, tag = image.partition(":")
    return {"registry": "registry-1.docker.io", "repository": repository, "tag": tag or "latest",
            "digest": "sha256:" + "0" * 64, "labels": {}}


class Simulator:
    def __init__(self, app, workdir):
        self.app = app
        self.workdir = workdir
        self.lock = threading.Condition()
        self.machines = {}  # id -> Machine, destroyed ones kept (GET still answers for them)
        self.next_ip = 1
        self.cursors = {}

    # -- helpers
    def get(self, app, machine_id):
        self.check_app(app)
        machine = self.machines.get(machine_id)
        if machine is None or machine.app != app:
            raise ApiError(404, "machine not found")
        return machine

    def check_app(self, app):
        if app != self.app:
            raise ApiError(404, "app not found")

    def allocate_ip(self):
        n = self.next_ip
        self.next_ip += 1
        return f"127.0.{2 + n // 254}.{1 + n % 254}"

    def set_state(self, machine, state):
        machine.state = state
        machine.updated_at = now_rfc3339()
        self.lock.notify_all()

    # -- API
    def app_json(self, app):
        self.check_app(app)
        with self.lock:
            count = sum(1 for m in self.machines.values() if m.state != "destroyed")
        return {"id": self.app, "name": self.app, "machine_count": count, "volume_count": 0,
                "network": "default", "status": "deployed",
                "organization": {"name": "SynthOrg tests", "slug": "personal"}}

    def create(self, app, request, checked=True):
        self.check_app(app)
        config = copy.deepcopy(request.get("config") or {})
        name = request.get("name") or f"machine-{secrets.token_hex(4)}"
        if checked:
            check_config(config)
        with self.lock:
            for other in self.machines.values():
                if other.app == app and other.name == name and other.state != "destroyed":
                    raise ApiError(409, f"a machine named \"{name}\" already exists in this app ({other.id})",
                                   "name_taken")
            metadata = config.setdefault("metadata", {})
            metadata.update(RESERVED_METADATA)
            guest = config.setdefault("guest", {})
            guest.setdefault("cpu_kind", "shared")
            guest.setdefault("cpus", 1)
            guest.setdefault("memory_mb", 256)
            machine_id = secrets.token_hex(7)
            machine = Machine(app, machine_id, name, request.get("region") or DEFAULT_REGION, config,
                              self.allocate_ip())
            machine.event("launch", "created", source="user")
            self.machines[machine_id] = machine
            answer = machine.to_json()
        if not request.get("skip_launch"):
            threading.Thread(target=self.start_machine, args=(machine,), daemon=True).start()
        return answer

    def start_machine(self, machine):
        with self.lock:
            if machine.state not in ("created", "stopped"):
                return
            self.set_state(machine, "starting")
            machine.requested_stop = False
        time.sleep(0.05)  # starting is a state clients can see
        argv, user, process_env = command_of(machine.config)
        # A Machine's memory is its VM's; this stand-in caps the process's address space at the
        # guest's memory_mb, so a workload allocating past it is refused all the same.
        memory_mb = (machine.config.get("guest") or {}).get("memory_mb")
        if memory_mb and os.path.exists("/usr/bin/prlimit"):
            argv = ["/usr/bin/prlimit", f"--as={int(memory_mb) * 1048576}", "--", *argv]
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "FLY_APP_NAME": machine.app, "FLY_MACHINE_ID": machine.id, "FLY_REGION": machine.region,
               "FLY_PRIVATE_IP": machine.private_ip, "FLY_IMAGE_REF": machine.config.get("image", ""),
               "FLY_MACHINE_VERSION": machine.version}
        env.update(machine.config.get("env") or {})
        env.update(process_env or {})
        env["SYNTHORG_LISTEN_HOST"] = machine.private_ip
        directory = os.path.join(self.workdir, "machines", machine.id)
        os.makedirs(directory, exist_ok=True)
        log = open(os.path.join(directory, "output.log"), "ab")
        try:
            process = subprocess.Popen(argv, env=env, cwd="/", stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True, **credentials(user))
        except (OSError, ApiError) as e:
            log.write(f"cannot run {argv}: {e}\n".encode())
            log.close()
            with self.lock:
                machine.event("exit", "stopped", {"exit_event": {"exit_code": 127, "exited_at": now_rfc3339()}})
                self.set_state(machine, "failed")
            return
        with self.lock:
            machine.process = process
            machine.log = log
            if machine.state == "starting":
                machine.event("start", "started")
                self.set_state(machine, "started")
            else:  # stopped or destroyed while starting
                kill_group(process, signal.SIGKILL)
        threading.Thread(target=self.monitor, args=(machine, process), daemon=True).start()

    def monitor(self, machine, process):
        code = process.wait()
        exit_event = {"exited_at": now_rfc3339(), "requested_stop": machine.requested_stop}
        if code < 0:
            exit_event["signal"] = -code
            exit_event["exit_code"] = 128 - code
        elif code:
            exit_event["exit_code"] = code  # flyd omits a zero exit code (omitempty)
        restart = False
        with self.lock:
            if machine.process is not process:
                return
            machine.process = None
            if machine.log:
                machine.log.close()
                machine.log = None
            policy = (machine.config.get("restart") or {}).get("policy", "on-failure")
            retries = (machine.config.get("restart") or {}).get("max_retries", 10)
            if not machine.requested_stop and machine.state == "started":
                restart = policy == "always" or (policy == "on-failure" and code != 0 and machine.restarts < retries)
            exit_event["restarting"] = restart
            machine.event("exit", "stopped", {"exit_event": exit_event, "restart_count": machine.restarts})
            if machine.state != "destroyed":
                self.set_state(machine, "stopped")
            if restart:
                machine.restarts += 1
            elif machine.config.get("auto_destroy") and machine.state == "stopped":
                machine.event("destroy", "destroyed")
                self.set_state(machine, "destroyed")
        if restart:
            self.start_machine(machine)

    def stop(self, app, machine_id, request):
        machine = self.get(app, machine_id)
        stop_config = machine.config.get("stop_config") or {}
        sig = request.get("signal") or stop_config.get("signal") or "SIGINT"
        timeout = parse_duration(request.get("timeout") or stop_config.get("timeout") or "5s")
        with self.lock:
            if machine.state == "destroyed":
                raise ApiError(404, "machine not found")
            if machine.state in ("stopped", "created", "failed"):
                return
            machine.requested_stop = True
            process = machine.process
            machine.event("stop", "stopping", source="user")
            self.set_state(machine, "stopping")
        if process is None:
            with self.lock:
                self.set_state(machine, "stopped")
            return
        kill_group(process, getattr(signal, sig))
        threading.Thread(target=self.kill_after, args=(process, timeout), daemon=True).start()

    @staticmethod
    def kill_after(process, timeout):
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(process, signal.SIGKILL)

    def start(self, app, machine_id):
        machine = self.get(app, machine_id)
        with self.lock:
            if machine.state not in ("created", "stopped"):
                raise ApiError(412, f"machine is {machine.state}, not stopped", "unknown")
        threading.Thread(target=self.start_machine, args=(machine,), daemon=True).start()

    def destroy(self, app, machine_id, force):
        machine = self.get(app, machine_id)
        with self.lock:
            if machine.state == "destroyed":
                raise ApiError(404, "machine not found")
            if machine.state in ("started", "starting", "stopping") and not force:
                raise ApiError(412, "failed_precondition: unable to destroy machine, not currently stopped")
            process = machine.process
            machine.requested_stop = True
            machine.event("destroy", "destroyed", source="user")
            self.set_state(machine, "destroyed")
        if process is not None:
            kill_group(process, signal.SIGKILL)

    def wait(self, app, machine_id, states, timeout):
        machine = self.get(app, machine_id)
        deadline = time.monotonic() + min(timeout, WAIT_LIMIT_SECONDS)
        wanted = ", ".join(sorted(states))
        with self.lock:
            while machine.state not in states:
                if machine.state == "destroyed":
                    raise ApiError(400, f"machine {machine.id} was destroyed while waiting for {wanted}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ApiError(408, f"deadline_exceeded: machine did not reach {wanted} in time")
                self.lock.wait(left)
            return {"ok": True, "state": machine.state, "version": machine.version,
                    "event_id": machine.events[0]["id"] if machine.events else ""}

    def list(self, app, query):
        self.check_app(app)
        include_deleted = query.get("include_deleted") == "true"
        states = [s for s in (query.get("state") or "").split(",") if s]
        metadata = {k[len("metadata."):]: v for k, v in query.items() if k.startswith("metadata.")}
        region = query.get("region")
        with self.lock:
            selected = [m for m in sorted(self.machines.values(), key=lambda m: (m.created_at, m.id))
                        if m.app == app and (include_deleted or m.state != "destroyed")
                        and (not states or m.state in states) and (not region or m.region == region)
                        and all((m.config.get("metadata") or {}).get(k) == v for k, v in metadata.items())]
            summary = query.get("summary") == "true"
            if "cursor" in query and "limit" not in query:
                raise ApiError(400, "cursor requires limit")
            if "limit" not in query:
                return [m.to_json(summary) for m in selected], None
            limit = int(query["limit"])
            if not 1 <= limit <= 1000:
                raise ApiError(400, "limit must be between 1 and 1000")
            start = 0
            if "cursor" in query:
                start = self.cursors.get(query["cursor"])
                if start is None:
                    raise ApiError(400, "invalid or expired cursor")
            page = selected[start:start + limit]
            cursor = None
            if start + limit < len(selected):
                cursor = base64.urlsafe_b64encode(secrets.token_bytes(12)).decode().rstrip("=")
                self.cursors[cursor] = start + limit
            return [m.to_json(summary) for m in page], cursor

    def shutdown(self):
        with self.lock:
            processes = [m.process for m in self.machines.values() if m.process]
        for process in processes:
            kill_group(process, signal.SIGKILL)


def kill_group(process, sig):
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def parse_duration(text):
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?", str(text).strip())
    if not match:
        raise ApiError(400, f"invalid duration {text!r}")
    value = float(match.group(1))
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]


def command_of(config):
    """What flyd runs, and as whom: the machine's one process when config.processes is given,
    else init. exec replaces everything; otherwise entrypoint + cmd, falling back to the
    image's (here: a long sleep, as an image with no command would serve)."""
    processes = config.get("processes") or []
    source = processes[0] if processes else (config.get("init") or {})
    if source.get("exec"):
        argv = list(source["exec"])
    else:
        entrypoint = list(source.get("entrypoint") or [])
        cmd = list(source.get("cmd") or [])
        argv = entrypoint + cmd if (entrypoint or cmd) else ["sleep", "3600"]
    # Test images are busybox-static: an applet name runs through /bin/busybox when the host
    # lacks the program.
    if "/" not in argv[0] and shutil.which(argv[0]) is None and os.path.exists("/bin/busybox"):
        argv = ["/bin/busybox"] + argv
    return argv, (processes[0].get("user") if processes else None), (processes[0].get("env") if processes else None)


def credentials(user):
    """Popen keyword arguments running as `user` ("uid[:gid]" or a name), when this server may."""
    if not user or os.geteuid() != 0:
        return {}
    import grp
    import pwd
    name, _, group = user.partition(":")
    try:
        uid = int(name) if name.isdigit() else pwd.getpwnam(name).pw_uid
        if group:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        else:
            gid = pwd.getpwuid(uid).pw_gid if name.isdigit() else pwd.getpwnam(name).pw_gid
    except KeyError:
        raise ApiError(422, f"invalid config.processes user {user!r}: no such user or group")
    return {"user": uid, "group": gid, "extra_groups": []}


def check_config(config):
    """What flaps refuses beyond the schema (HTTP 422, as it answers invalid configs)."""
    image = config.get("image")
    if not image:
        raise ApiError(422, "invalid config: image is required")
    if image.startswith("missing/"):
        raise ApiError(422, f"failed to launch VM: failed to get manifest for {image}: "
                            f"MANIFEST_UNKNOWN: manifest unknown; the image does not exist", "unknown")
    guest = config.get("guest") or {}
    if "cpu_kind" in guest and guest["cpu_kind"] not in ("shared", "performance"):
        raise ApiError(422, f"invalid config.guest.cpu_kind {guest['cpu_kind']!r}: use shared or performance")
    if "cpus" in guest and guest["cpus"] not in (1, 2, 4, 8, 16):
        raise ApiError(422, f"invalid config.guest.cpus {guest['cpus']}: use 1, 2, 4, 8 or 16")
    memory = guest.get("memory_mb")
    cpus = guest.get("cpus", 1)
    per_cpu = (2048, 8192) if guest.get("cpu_kind") == "performance" else (256, 2048)
    if memory is not None and (memory % 256 or not per_cpu[0] * cpus <= memory <= per_cpu[1] * cpus):
        raise ApiError(422, f"invalid config.guest.memory_mb {memory}: memory must be a multiple of 256 MiB, "
                            f"from {per_cpu[0] * cpus} to {per_cpu[1] * cpus} MiB for {cpus} "
                            f"{guest.get('cpu_kind', 'shared')} CPUs")
    for mount in config.get("mounts") or []:
        if not mount.get("volume") or not mount.get("path"):
            raise ApiError(422, "invalid config.mounts: each mount needs a volume id and a path")
        raise ApiError(404, f"volume {mount['volume']!r} not found")
    for service in config.get("services") or []:
        if service.get("protocol") not in ("tcp", "udp"):
            raise ApiError(422, f"invalid config.services protocol {service.get('protocol')!r}")
        if not 1 <= (service.get("internal_port") or 0) <= 65535:
            raise ApiError(422, "invalid config.services internal_port")
    processes = config.get("processes") or []
    if len(processes) > 1:
        raise ApiError(422, "the contract server simulates machines with one process")
    for process in processes:
        credentials(process.get("user"))  # an unknown user is refused here, as flaps would at launch
    policy = (config.get("restart") or {}).get("policy")
    if config.get("auto_destroy") and policy == "always":
        raise ApiError(422, "invalid config: auto_destroy cannot be used with restart policy always")
