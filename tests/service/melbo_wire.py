"""tests/service/melbo_wire.py - a minimal melbo protocol client in Python for the service tests
and the latency bench: generates Python code from proto/melbo.proto with Debian's protoc and uses
the official protobuf runtime (python3-protobuf), so passing tests prove the wire format is
standard protobuf. Framing (DESIGN §4): 4-byte big-endian length, then the Envelope bytes.
Also starts and stops a coordinator on a free loopback port in a fresh state directory."""
import importlib, os, shutil, socket, struct, subprocess, sys, time

def load_pb2(repo, outdir):
    os.makedirs(outdir, exist_ok=True)
    subprocess.run(["protoc", f"--python_out={outdir}", f"-I{repo}", f"{repo}/proto/melbo.proto"],
                   check=True)
    sys.path.insert(0, outdir)
    return importlib.import_module("proto.melbo_pb2")

def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload

class Conn:
    def __init__(self, pb, addr, timeout=30):
        host, port = addr.rsplit(":", 1)
        self.pb = pb
        self.s = socket.create_connection((host, int(port)), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.next_id = 0

    def send(self, env):
        self.s.sendall(frame(env.SerializeToString()))

    def recv(self):
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    env = self.pb.Envelope()
                    env.ParseFromString(self.buf[4:4 + n])
                    self.buf = self.buf[4 + n:]
                    return env
            chunk = self.s.recv(1 << 16)
            if not chunk:
                raise EOFError("closed")
            self.buf += chunk

    def call(self, **body):
        self.next_id += 1
        env = self.pb.Envelope(id=self.next_id, **body)
        self.send(env)
        while True:
            rep = self.recv()
            if rep.id == self.next_id or rep.WhichOneof("body") == "error":
                return rep

    def hello(self, token):
        rep = self.call(hello=self.pb.Hello(protocol_version=1, token=token, client="python"))
        if rep.WhichOneof("body") != "hello_ok":
            raise RuntimeError(f"hello refused: {rep.error.message}")
        return rep

    def close(self):
        self.s.close()

class Coord:
    """melbo-coord init + serve in tmp/state on 127.0.0.1:0."""
    def __init__(self, build, tmp, extra=()):
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        self.state = os.path.join(tmp, "state")
        coord = os.path.join(build, "coord", "melbo-coord")
        out = subprocess.run([coord, "init", "--state", self.state, "--listen", "127.0.0.1:0"],
                             check=True, capture_output=True, text=True).stdout
        self.token = [l.split("=", 1)[1] for l in out.splitlines() if l.startswith("MELBO_TOKEN=")][0]
        env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="passive")
        self.log = open(os.path.join(tmp, "serve.log"), "w")
        self.proc = subprocess.Popen([coord, "serve", "--state", self.state, *extra], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        addr_file = os.path.join(self.state, "address")
        for _ in range(200):
            if os.path.exists(addr_file) and open(addr_file).read().strip():
                break
            time.sleep(0.05)
        self.addr = open(addr_file).read().strip()

    def rss_kb(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        # ranks of this coordinator's jobs
        out = subprocess.run(["pgrep", "-f", "--", os.path.join(self.state, "jobs")],
                             capture_output=True, text=True).stdout
        for pid in out.split():
            try:
                os.kill(int(pid), 9)
            except OSError:
                pass
        self.log.close()

def job_spec(pb, golden, **kw):
    """A JobSpec of options by name, as `melbo submit` sends it: each keyword is an option
    (max_new_tokens=2 is --max-new-tokens 2; True is a flag, False its --no- form)."""
    opts = [("model", os.path.abspath(os.path.join(golden, "models", "llama3"))),
            ("prompt-ids", "492,403,287,109,129,38,286"),
            ("source-layer", "1"), ("target-layer", "4"), ("radius", "4")]
    for k, v in kw.items():
        name = k.replace("_", "-")
        if v is True or v is False:
            opts.append((name if v else "no-" + name, None))
        else:
            opts.append((name, str(v)))
    spec = pb.JobSpec()
    for name, value in opts:
        o = spec.options.add(name=name)
        if value is not None:
            o.value = value
    return spec

def legacy_job_spec(pb, golden, **kw):
    """The same job as melbo 0.1's protocol sent it: one JobSpec field per option."""
    spec = pb.JobSpec(model=os.path.abspath(os.path.join(golden, "models", "llama3")),
                      source_layer=1, target_layer=4, radius=4.0, **kw)
    spec.id_prompts.add(ids=[492, 403, 287, 109, 129, 38, 286])
    return spec
