#!/usr/bin/python3
"""The cluster behind tests/contract/kubernetes_server.py: Pods as the API server keeps them, and
the kubelet that runs them here.

Each pod gets a distinct IP 127.0.1.N and its container's command runs from a rootfs like
tests/images' synthorg-test/busybox (busybox and its applets, /etc/passwd, /tmp, /www/index.html),
in its own mount, PID and UTS namespaces when the host allows it (run as root): read-only root,
emptyDir tmpfs volumes, hostPath binds, runAsUser/Group, no new privileges and an empty capability
bounding set are applied as a runtime would, and its first process is PID 1 (so a busybox that
installs no SIGTERM handler is killed at the end of the grace, as in a real container). Memory and
CPU limits are recorded, not enforced.

`kubernetes_kubelet.py --launch SPEC_JSON` is one container's process (see launch()).
"""
import copy
import ctypes
import datetime
import json
import os
import resource
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

NODE_MEMORY = 64 << 30
NODE_CPU = 16.0


# ---------------------------------------------------------------------------------------------
# The launcher: `kubernetes_kubelet.py --launch SPEC_JSON` becomes one container's process.
# It runs single-threaded in a fresh interpreter, so namespace and mount set-up is safe here.

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWPID = 0x00020000, 0x04000000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 38, 47, 4


def launch(spec):
    libc = ctypes.CDLL(None, use_errno=True)

    def check(result, what):
        if result != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"{what}: {os.strerror(error)}")

    def mount(source, target, fstype, flags, data=None):
        check(libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(), ctypes.c_ulong(flags),
                         data and data.encode()), f"mount {target}")

    root = spec["rootfs"]
    isolated = libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS) == 0
    if not isolated:
        sys.stderr.write("kubelet (contract server): cannot isolate the container (not root?); running it plainly\n")
    # Signals for the container reach the whole process group; this launcher only relays the
    # container's end. Set before the fork so that no early SIGTERM can kill just the launcher.
    signal.signal(signal.SIGTERM, lambda *_: None)
    pid = os.fork() if isolated else 0
    if pid:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
    try:
        env = dict(spec["env"])
        if isolated:
            # PID 1 of its namespace from here on, like a container's first process.
            mount(None, "/", None, MS_REC | MS_PRIVATE)
            mount(root, root, None, MS_BIND | MS_REC)
            for volume in spec["mounts"]:
                target = os.path.join(root, volume["target"].lstrip("/"))
                os.makedirs(target, exist_ok=True)
                if volume["type"] == "tmpfs":
                    size = f",size={volume['size']}" if volume.get("size") else ""
                    mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777" + size)
                else:
                    mount(volume["source"], target, None, MS_BIND | MS_REC)
                if volume.get("read_only"):
                    mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
            for device in ("null", "zero", "urandom", "random"):
                path = os.path.join(root, "dev", device)
                if not os.path.exists(path):
                    open(path, "w").close()
                mount(f"/dev/{device}", path, None, MS_BIND)
            os.makedirs(os.path.join(root, "proc"), exist_ok=True)
            mount("proc", os.path.join(root, "proc"), "proc", MS_NOSUID | MS_NODEV)
            if spec["read_only_root"]:
                mount(None, root, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
            hostname = spec["hostname"].encode()
            check(libc.sethostname(hostname, ctypes.c_size_t(len(hostname))), "sethostname")
            os.chroot(root)
            os.chdir("/")
            if spec["drop_all_capabilities"]:
                for cap in range(0, 64):
                    if libc.prctl(PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0) != 0:
                        break
                libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
            uid, gid = spec.get("uid"), spec.get("gid")
            if gid is not None or uid is not None:
                gid = gid if gid is not None else 0
                os.setgroups([gid])
                os.setgid(gid)
            if uid is not None:
                os.setuid(uid)
            if spec["no_new_privileges"]:
                check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        else:
            os.chdir(root)
            env["PATH"] = os.path.join(root, "bin") + ":" + env.get("PATH", "/bin")
        argv = spec["argv"]
        if not argv:
            sys.stderr.write("kubelet (contract server): the container has no command\n")
            os._exit(128)
        if spec.get("memory_limit"):
            limit = int(spec["memory_limit"])
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.execvpe(argv[0], argv, env)
    except OSError as error:
        sys.stderr.write(f"kubelet (contract server): cannot start {spec['argv'][:1]}: {error}\n")
        sys.stderr.flush()
        os._exit(127 if isinstance(error, FileNotFoundError) else 128)


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------
# The cluster: pods, their history, and the kubelet that runs them.

def status_object(code, reason, message, details=None):
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
              "reason": reason, "code": code}
    if details:
        status["details"] = details
    return status


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.status = status_object(code, reason, message, details)


DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def parse_quantity(text):
    match = re.fullmatch(r"([+-]?[0-9.]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?", str(text))
    if not match:
        raise ValueError(text)
    factors = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60, "n": 1e-9,
               "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
    suffix = match.group(2)
    factor = 10 ** int(suffix[1:]) if suffix and suffix[0] in "eE" else factors[suffix]
    return float(match.group(1)) * factor


class Pod:
    def __init__(self, obj):
        self.obj = obj
        self.proc = None
        self.log = bytearray()
        self.output_done = False
        self.deleted = False
        self.started = False
        self.rootfs = None
        self.kill_timer = None


class Cluster:
    def __init__(self, workdir, image_commands):
        self.cond = threading.Condition()
        self.pods = {}  # (namespace, name) → Pod
        self.version = 1000
        self.history = []  # (rv, type, namespace, object)
        self.ip_counter = 0
        self.workdir = workdir
        self.image_commands = image_commands
        self.base_rootfs = os.path.join(workdir, "rootfs")
        self.make_base_rootfs()

    def make_base_rootfs(self):
        root = self.base_rootfs
        shutil.rmtree(root, ignore_errors=True)
        for directory in ("bin", "etc", "tmp", "www", "dev", "proc"):
            os.makedirs(os.path.join(root, directory), exist_ok=True)
        os.chmod(os.path.join(root, "tmp"), 0o1777)
        os.chmod(root, 0o755)
        shutil.copy2("/bin/busybox", os.path.join(root, "bin", "busybox"))
        applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
        for applet in applets:
            if applet != "busybox":
                os.symlink("busybox", os.path.join(root, "bin", applet))
        with open(os.path.join(root, "etc", "passwd"), "w") as f:
            f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
        with open(os.path.join(root, "etc", "group"), "w") as f:
            f.write("root:x:0:\nnogroup:x:65534:\n")
        with open(os.path.join(root, "www", "index.html"), "w") as f:
            f.write("synthorg test workload\n")

    # -- events ---------------------------------------------------------------------------------
    def emit(self, kind, pod):
        """Records a change (the caller holds the lock) and wakes the watchers."""
        self.version += 1
        pod.obj["metadata"]["resourceVersion"] = str(self.version)
        self.history.append((self.version, kind, pod.obj["metadata"]["namespace"], copy.deepcopy(pod.obj)))
        if len(self.history) > 20000:
            del self.history[:5000]
        self.cond.notify_all()

    def next_ip(self):
        n = self.ip_counter
        self.ip_counter += 1
        return f"127.0.{1 + n // 254}.{1 + n % 254}"

    # -- create ---------------------------------------------------------------------------------
    def create(self, namespace, body):
        metadata = body.setdefault("metadata", {})
        name = metadata.get("name") or ""
        if not name and metadata.get("generateName"):
            name = metadata["generateName"] + uuid.uuid4().hex[:5]
        problems = []
        if not name:
            problems.append("metadata.name: Required value: name or generateName is required")
        elif len(name) > 253 or not DNS_SUBDOMAIN.match(name):
            problems.append(f"metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of "
                            "lower case alphanumeric characters, '-' or '.'")
        if metadata.get("namespace") not in (None, namespace):
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace "
                                              "sent on the request")
        for key, value in (metadata.get("labels") or {}).items():
            prefix, _, label = key.rpartition("/")
            if not LABEL_NAME.match(label) or len(label) > 63 or (prefix and not DNS_SUBDOMAIN.match(prefix)):
                problems.append(f"metadata.labels: Invalid value: \"{key}\": name part must consist of alphanumeric "
                                "characters, '-', '_' or '.'")
            if value and (len(value) > 63 or not LABEL_NAME.match(value)):
                problems.append(f"metadata.labels: Invalid value: \"{value}\": a valid label must be an empty string "
                                "or consist of alphanumeric characters, '-', '_' or '.'")
        spec = body.get("spec") or {}
        containers = spec.get("containers") or []
        if not containers:
            problems.append("spec.containers: Required value")
        volumes = {v.get("name") for v in spec.get("volumes") or []}
        if len(volumes) != len(spec.get("volumes") or []):
            problems.append("spec.volumes: Duplicate value")
        for volume in spec.get("volumes") or []:
            medium = (volume.get("emptyDir") or {}).get("medium")
            if medium not in (None, "", "Memory"):
                problems.append(f"spec.volumes.emptyDir.medium: Unsupported value: \"{medium}\"")
        if spec.get("restartPolicy") not in (None, "Always", "OnFailure", "Never"):
            problems.append(f"spec.restartPolicy: Unsupported value: \"{spec.get('restartPolicy')}\"")
        for i, container in enumerate(containers):
            where = f"spec.containers[{i}]"
            if not container.get("image"):
                problems.append(f"{where}.image: Required value")
            if not DNS_LABEL.match(container.get("name") or ""):
                problems.append(f"{where}.name: Invalid value: \"{container.get('name')}\"")
            if container.get("imagePullPolicy") not in (None, "Always", "IfNotPresent", "Never"):
                problems.append(f"{where}.imagePullPolicy: Unsupported value: \"{container.get('imagePullPolicy')}\"")
            for port in container.get("ports") or []:
                if not 0 < port.get("containerPort", 0) < 65536:
                    problems.append(f"{where}.ports.containerPort: Invalid value: {port.get('containerPort')}")
                if port.get("protocol") not in (None, "TCP", "UDP", "SCTP"):
                    problems.append(f"{where}.ports.protocol: Unsupported value: \"{port.get('protocol')}\"")
            for mount in container.get("volumeMounts") or []:
                if mount.get("name") not in volumes:
                    problems.append(f"{where}.volumeMounts.name: Not found: \"{mount.get('name')}\"")
            resources = container.get("resources") or {}
            for section in ("limits", "requests"):
                for resource, quantity in (resources.get(section) or {}).items():
                    try:
                        parse_quantity(quantity)
                    except ValueError:
                        problems.append(f"{where}.resources.{section}[{resource}]: Invalid value: \"{quantity}\"")
            for resource, quantity in (resources.get("requests") or {}).items():
                limit = (resources.get("limits") or {}).get(resource)
                try:
                    if limit is not None and parse_quantity(quantity) > parse_quantity(limit):
                        problems.append(f"{where}.resources.requests: Invalid value: \"{quantity}\": must be less "
                                        f"than or equal to {resource} limit of {limit}")
                except ValueError:
                    pass
        if problems:
            raise ApiError(422, "Invalid", f"Pod \"{name}\" is invalid: " + ", ".join(problems),
                           {"name": name, "kind": "Pod"})
        with self.cond:
            if (namespace, name) in self.pods:
                raise ApiError(409, "AlreadyExists", f"pods \"{name}\" already exists",
                               {"name": name, "kind": "pods"})
            metadata.pop("generateName", None)
            metadata.update({"name": name, "namespace": namespace, "uid": str(uuid.uuid4()),
                             "creationTimestamp": now_rfc3339()})
            spec.setdefault("restartPolicy", "Always")
            spec.setdefault("terminationGracePeriodSeconds", 30)
            spec.setdefault("dnsPolicy", "ClusterFirst")
            for container in containers:
                container.setdefault("imagePullPolicy", "IfNotPresent")
                container.setdefault("terminationMessagePath", "/dev/termination-log")
                resources = container.get("resources") or {}
                if resources.get("limits") and not resources.get("requests"):
                    resources["requests"] = dict(resources["limits"])
            body["spec"] = spec
            body["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
            pod = Pod(body)
            self.pods[(namespace, name)] = pod
            self.emit("ADDED", pod)
            created = copy.deepcopy(pod.obj)
        threading.Thread(target=self.kubelet, args=(pod,), daemon=True).start()
        return created

    # -- the kubelet ----------------------------------------------------------------------------
    def kubelet(self, pod):
        time.sleep(0.05)
        with self.cond:
            if pod.deleted:
                return
            obj = pod.obj
            spec, status = obj["spec"], obj["status"]
            container = spec["containers"][0]
            requests = (container.get("resources") or {}).get("requests") or {}
            shortage = []
            if any(key.endswith("/gpu") for key in requests):
                shortage.append("1 Insufficient " + next(key for key in requests if key.endswith("/gpu")))
            if "memory" in requests and parse_quantity(requests["memory"]) > NODE_MEMORY:
                shortage.append("1 Insufficient memory")
            if "cpu" in requests and parse_quantity(requests["cpu"]) > NODE_CPU:
                shortage.append("1 Insufficient cpu")
            if shortage:
                status["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                         "lastTransitionTime": now_rfc3339(),
                                         "message": "0/1 nodes are available: " + ", ".join(shortage) +
                                                    ". preemption: 0/1 nodes are available: 1 No preemption victims "
                                                    "found for incoming pod."}]
                self.emit("MODIFIED", pod)
                return
            spec["nodeName"] = "contract-node"
            ip = "127.0.0.1" if spec.get("hostNetwork") else self.next_ip()
            status.update({"hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}], "podIP": ip, "podIPs": [{"ip": ip}],
                           "startTime": now_rfc3339(),
                           "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now_rfc3339()}]})
            base = {"name": container["name"], "image": container["image"], "imageID": "", "ready": False,
                    "restartCount": 0, "started": False}
            if container["image"].startswith("missing/"):
                status["containerStatuses"] = [dict(base, state={"waiting": {
                    "reason": "ErrImagePull",
                    "message": f"failed to pull and unpack image \"{container['image']}\": pull access denied, "
                               "repository does not exist or may require authorization"}})]
                self.emit("MODIFIED", pod)
                self.cond.wait(1.0)
                if pod.deleted:
                    return
                status["containerStatuses"] = [dict(base, state={"waiting": {
                    "reason": "ImagePullBackOff", "message": f"Back-off pulling image \"{container['image']}\""}})]
                self.emit("MODIFIED", pod)
                return
            status["containerStatuses"] = [dict(base, state={"waiting": {"reason": "ContainerCreating"}})]
            self.emit("MODIFIED", pod)
        restarts = 0
        while True:
            code, started_at = self.run_container(pod, base, restarts)
            if code is None:
                break  # never started: deleted first, or the kubelet refused its configuration
            with self.cond:
                policy = pod.obj["spec"].get("restartPolicy", "Always")
                if pod.deleted or pod.obj["metadata"].get("deletionTimestamp") or policy == "Never" or (
                        policy == "OnFailure" and code == 0):
                    break
                restarts += 1
                pod.obj["status"]["containerStatuses"][0]["lastState"] = {"terminated": {
                    "exitCode": code, "startedAt": started_at, "finishedAt": now_rfc3339()}}
                self.emit("MODIFIED", pod)
                self.cond.wait(1.0)
        with self.cond:
            if pod.obj["metadata"].get("deletionTimestamp") and not pod.deleted:
                self.remove_locked(pod)
        self.cleanup_rootfs(pod)

    def container_argv(self, container):
        image_command = self.image_commands.get(container["image"], {"entrypoint": [], "cmd": ["/bin/sh"]})
        command = container.get("command")
        args = container.get("args")
        if command:
            return list(command) + list(args or [])
        return list(image_command.get("entrypoint", [])) + list(args if args else image_command.get("cmd", []))

    def run_container(self, pod, base, restarts):
        obj = pod.obj
        spec, container = obj["spec"], obj["spec"]["containers"][0]
        security = container.get("securityContext") or {}
        env = {"PATH": "/bin", "HOSTNAME": obj["metadata"]["name"]}
        for variable in container.get("env") or []:
            env[variable["name"]] = variable.get("value", "")
        env["SYNTHORG_LISTEN_HOST"] = obj["status"]["podIP"]
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        mounts = []
        for mount in container.get("volumeMounts") or []:
            volume = volumes[mount["name"]]
            if "emptyDir" in volume:
                entry = {"type": "tmpfs" if volume["emptyDir"].get("medium") == "Memory" else "tmpfs",
                         "target": mount["mountPath"], "read_only": bool(mount.get("readOnly"))}
                if volume["emptyDir"].get("sizeLimit"):
                    entry["size"] = str(int(parse_quantity(volume["emptyDir"]["sizeLimit"])))
                mounts.append(entry)
            elif "hostPath" in volume:
                mounts.append({"type": "bind", "source": volume["hostPath"]["path"], "target": mount["mountPath"],
                               "read_only": bool(mount.get("readOnly"))})
        rootfs = os.path.join(self.workdir, "pods", f"{obj['metadata']['name']}-{restarts}")
        shutil.rmtree(rootfs, ignore_errors=True)
        shutil.copytree(self.base_rootfs, rootfs, symlinks=True)
        pod.rootfs = rootfs
        launch_spec = {"rootfs": rootfs, "argv": self.container_argv(container), "env": env, "mounts": mounts,
                       "hostname": obj["metadata"]["name"][:63],
                       "read_only_root": bool(security.get("readOnlyRootFilesystem")),
                       "drop_all_capabilities": "ALL" in ((security.get("capabilities") or {}).get("drop") or []),
                       "no_new_privileges": security.get("allowPrivilegeEscalation") is False,
                       "uid": security.get("runAsUser"), "gid": security.get("runAsGroup"),
                       # A runtime enforces limits.memory with a cgroup; this stand-in caps the
                       # address space, so a workload allocating past it is refused all the same.
                       "memory_limit": parse_quantity(((container.get("resources") or {}).get("limits") or {})
                                                      .get("memory", "0"))}
        if security.get("runAsNonRoot") and not security.get("runAsUser"):
            # The kubelet refuses to start a container that would run as root.
            with self.cond:
                obj["status"]["containerStatuses"] = [dict(base, state={"waiting": {
                    "reason": "CreateContainerConfigError",
                    "message": "container has runAsNonRoot and image will run as root"}})]
                self.emit("MODIFIED", pod)
            return None, None
        with self.cond:
            if pod.deleted or obj["metadata"].get("deletionTimestamp"):
                return None, None
            pod.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--launch", json.dumps(launch_spec)],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            pod.output_done = False
            started_at = now_rfc3339()
            obj["status"]["phase"] = "Running"
            obj["status"]["containerStatuses"] = [dict(base, ready=True, started=True, restartCount=restarts,
                                                       containerID=f"contract://{uuid.uuid4().hex}",
                                                       state={"running": {"startedAt": started_at}})]
            obj["status"]["conditions"] = [{"type": "PodScheduled", "status": "True"},
                                           {"type": "Ready", "status": "True"}]
            self.emit("MODIFIED", pod)
        while True:
            chunk = pod.proc.stdout.read1(65536)
            if not chunk:
                break
            with self.cond:
                pod.log.extend(chunk)
                if len(pod.log) > 8 << 20:
                    del pod.log[:len(pod.log) - (8 << 20)]
                self.cond.notify_all()
        code = pod.proc.wait()
        code = code if code >= 0 else 128 - code
        with self.cond:
            pod.output_done = True
            if pod.kill_timer:
                pod.kill_timer.cancel()
            status = obj["status"]
            previous = status["containerStatuses"][0]
            previous.update(ready=False, started=False, state={"terminated": {
                "exitCode": code, "reason": "Completed" if code == 0 else "Error", "startedAt": started_at,
                "finishedAt": now_rfc3339(), "containerID": previous.get("containerID", "")}})
            policy = obj["spec"].get("restartPolicy", "Always")
            if policy == "Never" or obj["metadata"].get("deletionTimestamp"):
                status["phase"] = "Succeeded" if code == 0 else "Failed"
            status["conditions"] = [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}]
            self.emit("MODIFIED", pod)
        return code, started_at

    def signal(self, pod, sig):
        if pod.proc and pod.proc.poll() is None:
            try:
                os.killpg(pod.proc.pid, sig)
            except ProcessLookupError:
                pass

    def cleanup_rootfs(self, pod):
        """Removes the pod's rootfs, refusing to descend into anything still mounted."""
        if not pod.rootfs or not os.path.isdir(pod.rootfs):
            return
        for directory, subdirectories, _ in os.walk(pod.rootfs):
            for sub in subdirectories:
                if os.path.ismount(os.path.join(directory, sub)):
                    sys.stderr.write(f"contract server: {pod.rootfs} still has mounts; left in place\n")
                    return
        shutil.rmtree(pod.rootfs, ignore_errors=True)

    # -- delete ---------------------------------------------------------------------------------
    def remove_locked(self, pod):
        pod.deleted = True
        key = (pod.obj["metadata"]["namespace"], pod.obj["metadata"]["name"])
        if self.pods.get(key) is pod:
            del self.pods[key]
        self.emit("DELETED", pod)

    def delete(self, namespace, name, options, grace_query):
        with self.cond:
            pod = self.get_locked(namespace, name)
            preconditions = options.get("preconditions") or {}
            if preconditions.get("uid") and preconditions["uid"] != pod.obj["metadata"]["uid"]:
                raise ApiError(409, "Conflict", f"Operation cannot be fulfilled on Pod \"{name}\": Precondition failed: "
                                                f"UID in precondition: {preconditions['uid']}, UID in object meta: "
                                                f"{pod.obj['metadata']['uid']}", {"name": name, "kind": "Pod"})
            if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != \
                    pod.obj["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", f"Operation cannot be fulfilled on Pod \"{name}\": Precondition "
                                                "failed: resourceVersion mismatch", {"name": name, "kind": "Pod"})
            grace = options.get("gracePeriodSeconds", grace_query)
            if grace is None:
                grace = pod.obj["spec"].get("terminationGracePeriodSeconds", 30)
            running = pod.proc is not None and pod.proc.poll() is None
            if grace == 0 or not running:
                # Immediate: nothing runs (or it is forced). A running process is killed anyway.
                self.signal(pod, signal.SIGKILL)
                self.remove_locked(pod)
                return copy.deepcopy(pod.obj)
            metadata = pod.obj["metadata"]
            if metadata.get("deletionTimestamp") and metadata.get("deletionGracePeriodSeconds", grace) <= grace:
                return copy.deepcopy(pod.obj)
            deadline = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=grace)
            metadata["deletionTimestamp"] = deadline.strftime("%Y-%m-%dT%H:%M:%SZ")
            metadata["deletionGracePeriodSeconds"] = grace
            self.emit("MODIFIED", pod)
            self.signal(pod, signal.SIGTERM)
            if pod.kill_timer:
                pod.kill_timer.cancel()
            pod.kill_timer = threading.Timer(grace, lambda: self.signal(pod, signal.SIGKILL))
            pod.kill_timer.daemon = True
            pod.kill_timer.start()
            return copy.deepcopy(pod.obj)

    # -- read -----------------------------------------------------------------------------------
    def get_locked(self, namespace, name):
        pod = self.pods.get((namespace, name))
        if pod is None:
            raise ApiError(404, "NotFound", f"pods \"{name}\" not found", {"name": name, "kind": "pods"})
        return pod

    def get(self, namespace, name):
        with self.cond:
            return copy.deepcopy(self.get_locked(namespace, name).obj)

    def matching(self, namespace, selector):
        return [copy.deepcopy(pod.obj) for (ns, _), pod in sorted(self.pods.items())
                if ns == namespace and selector(pod.obj)]


def parse_label_selector(text):
    """Equality-based requirements (k=v, k==v, k!=v, k, !k), comma-separated, as the API server reads them."""
    requirements = []
    for term in filter(None, (t.strip() for t in (text or "").split(","))):
        match = re.fullmatch(r"([A-Za-z0-9./_-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)", term)
        if match:
            key, op, value = match.groups()
            requirements.append((key, op != "!=", value))
            continue
        match = re.fullmatch(r"(!?)([A-Za-z0-9./_-]+)", term)
        if match:
            requirements.append((match.group(2), "exists" if not match.group(1) else "absent", None))
            continue
        raise ApiError(400, "BadRequest", f"unable to parse requirement: found '{term}', expected: '=', '!=', '==' "
                                          "or an existence check")

    def matches(obj):
        labels = obj["metadata"].get("labels") or {}
        for key, op, value in requirements:
            if op == "exists" and key not in labels:
                return False
            if op == "absent" and key in labels:
                return False
            if op is True and labels.get(key) != value:
                return False
            if op is False and labels.get(key) == value:
                return False
        return True
    return matches


def parse_field_selector(text):
    fields = {"metadata.name": lambda o: o["metadata"]["name"],
              "metadata.namespace": lambda o: o["metadata"]["namespace"],
              "status.phase": lambda o: o["status"].get("phase", ""),
              "spec.nodeName": lambda o: o["spec"].get("nodeName", "")}
    requirements = []
    for term in filter(None, (t.strip() for t in (text or "").split(","))):
        match = re.fullmatch(r"([A-Za-z.]+)\s*(==|=|!=)\s*(.*)", term)
        if not match:
            raise ApiError(400, "BadRequest", f"invalid selector: '{term}'; can't understand '{term}'")
        field, op, value = match.groups()
        if field not in fields:
            raise ApiError(400, "BadRequest", f"field label not supported: {field}")
        requirements.append((fields[field], op != "!=", value))
    return lambda obj: all((get(obj) == value) == equal for get, equal, value in requirements)


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--launch":
    launch(json.loads(sys.argv[2]))
