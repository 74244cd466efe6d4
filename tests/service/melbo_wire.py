"""tests/service/melbo_wire.py - a minimal melbo protocol client in Python for the service tests
and the latency bench: generates Python code from proto/melbo.proto with Debian's protoc and uses
the official protobuf runtime (python3-protobuf), so passing tests prove the wire format is
standard protobuf. Framing (DESIGN §4): 4-byte big-endian length, then the Envelope bytes.
Connections speak TLS 1.3 with Python's ssl module and pin the coordinator's certificate (the
sha256 of its DER against MELBO_COORD_FINGERPRINT, or the fingerprint of the last Coord
started); Coord(tls=False) serves plaintext on loopback (coord.conf plaintext_loopback=1) for
the tests that write raw bytes to the socket.
Also starts and stops a coordinator on a free loopback port in a fresh state directory, collects
a bank export or report (ExportChunk messages, checked as it goes), and writes and reads
safetensors files (banks) with the standard library only."""
import hashlib, importlib, json, os, shutil, socket, ssl, struct, subprocess, sys, time

def load_pb2(repo, outdir):
    os.makedirs(outdir, exist_ok=True)
    subprocess.run(["protoc", f"--python_out={outdir}", f"-I{repo}", f"{repo}/proto/melbo.proto"],
                   check=True)
    sys.path.insert(0, outdir)
    return importlib.import_module("proto.melbo_pb2")

def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload

FINGERPRINT = None  # set by Coord: "sha256:HEX", or "" for a plaintext coordinator

def tls_wrap(sock, fingerprint):
    """TLS 1.3 over sock, pinned: the certificate's sha256 must be fingerprint."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = ctx.wrap_socket(sock)
    got = "sha256:" + hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()
    if got.lower() != fingerprint.lower():
        s.close()
        raise ssl.SSLError(f"certificate {got[:23]} is not the pinned {fingerprint[:23]}")
    return s

class Conn:
    def __init__(self, pb, addr, timeout=30, source=None, fingerprint=None):
        """source: a local address to connect from (another 127.x.y.z is another peer).
        fingerprint: the pin (default: the last Coord's, else MELBO_COORD_FINGERPRINT; "" for
        plaintext)."""
        host, port = addr.rsplit(":", 1)
        self.pb = pb
        if fingerprint is None:
            fingerprint = FINGERPRINT if FINGERPRINT is not None else \
                os.environ.get("MELBO_COORD_FINGERPRINT", "")
        self.s = socket.create_connection((host, int(port)), timeout=timeout,
                                          source_address=(source, 0) if source else None)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if fingerprint:
            self.s = tls_wrap(self.s, fingerprint)
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

    def export(self, **body):
        """Sends one bank_export= (ExportRequest) or bank_report= (ReportRequest) request and
        collects its answer: an Export with .error (the Error, or None), .directory and .files
        (name -> bytes in the order received; "" names a single-file output) and .chunks. Checks
        what every ExportChunk promises (offsets, sizes, per-file sha256, file count, total,
        last) and raises AssertionError when the coordinator breaks it."""
        self.next_id += 1
        req = self.next_id
        self.send(self.pb.Envelope(id=req, **body))
        x = Export()
        cur, data = None, b""
        while True:
            env = self.recv()
            kind = env.WhichOneof("body")
            if kind == "error" and env.id in (req, 0):
                x.error = env.error
                return x
            assert env.id == req and kind == "export_chunk", f"unexpected {kind} id {env.id}"
            c = env.export_chunk
            x.chunks += 1
            assert len(c.data) <= 1 << 20, "chunk over 1 MiB"
            if cur is None:
                assert c.name not in x.files, f"file {c.name!r} twice"
                cur, data = c.name, b""
                x.directory = c.directory
            assert c.name == cur and c.offset == len(data), (c.name, c.offset, len(data))
            data += c.data
            if c.file_last:
                assert len(data) == c.file_size and c.sha256 == hashlib.sha256(data).hexdigest()
                x.files[cur] = data
                cur = None
            if c.last:
                assert cur is None and len(x.files) == c.files
                assert sum(map(len, x.files.values())) == c.total_size
                return x

    def upload(self, option, path):
        """Uploads a local file for a job's --init (or --calibration-init) as `melbo submit`
        does: InputUpload chunks of at most 1 MiB, each acknowledged. Returns the spec value
        that names it ("upload:init"); raises RuntimeError on an Error reply."""
        data = open(path, "rb").read()
        off = 0
        while True:
            chunk = data[off:off + (1 << 20)]
            last = off + len(chunk) >= len(data)
            u = self.pb.InputUpload(option=option, offset=off, data=chunk, total_size=len(data),
                                    last=last)
            if last:
                u.sha256 = hashlib.sha256(data).hexdigest()
            rep = self.call(input_upload=u)
            if rep.WhichOneof("body") != "input_upload_ack":
                raise RuntimeError(f"upload refused: {rep.error.message}")
            off += len(chunk)
            if last:
                return "upload:" + option

    def hello(self, token):
        rep = self.call(hello=self.pb.Hello(protocol_version=1, token=token, client="python"))
        if rep.WhichOneof("body") != "hello_ok":
            raise RuntimeError(f"hello refused: {rep.error.message}")
        return rep

    def close(self):
        self.s.close()

class Export:
    """What Conn.export collected."""
    def __init__(self):
        self.error, self.directory, self.files, self.chunks = None, False, {}, 0

class Coord:
    """melbo-coord init + serve in tmp/state on 127.0.0.1:0. conf: lines appended to coord.conf
    before serve. Every test connects from 127.0.0.1, so unless conf names it the limit of
    connections per address is raised to 4096 (tests about limits set their own)."""
    def __init__(self, build, tmp, extra=(), conf=(), tls=True):
        global FINGERPRINT
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        self.state = os.path.join(tmp, "state")
        coord = os.path.join(build, "coord", "melbo-coord")
        out = subprocess.run([coord, "init", "--state", self.state, "--listen", "127.0.0.1:0"],
                             check=True, capture_output=True, text=True).stdout
        self.token = [l.split("=", 1)[1] for l in out.splitlines() if l.startswith("MELBO_TOKEN=")][0]
        self.fingerprint = [l.split("=", 1)[1] for l in out.splitlines()
                            if l.startswith("MELBO_COORD_FINGERPRINT=")][0] if tls else ""
        FINGERPRINT = self.fingerprint
        # the CLI and melbo.Client that the tests start find the pin where users keep it
        if tls:
            os.environ["MELBO_COORD_FINGERPRINT"] = self.fingerprint
        else:
            os.environ.pop("MELBO_COORD_FINGERPRINT", None)
        conf = list(conf)
        if not tls:
            conf.append("plaintext_loopback=1")
        if not any(l.startswith("limits.connections_per_address") for l in conf):
            conf.append("limits.connections_per_address=4096")
        if not any(l.startswith("model_root=") for l in conf):  # jobs name only models under roots
            conf.append("model_root=" + os.path.abspath(
                os.path.join(os.path.dirname(__file__), "..", "golden", "models")))
        with open(os.path.join(self.state, "coord.conf"), "a") as f:
            f.write("".join(l + "\n" for l in conf))
        self.cmd = [coord, "serve", "--state", self.state, *extra]
        self.log_path = os.path.join(tmp, "serve.log")
        self._serve()

    def _serve(self):
        env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="passive")
        addr_file = os.path.join(self.state, "address")
        if os.path.exists(addr_file):
            os.remove(addr_file)
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(200):
            if os.path.exists(addr_file) and open(addr_file).read().strip():
                break
            time.sleep(0.05)
        self.addr = open(addr_file).read().strip()

    def restart(self):
        """kill -9 and serve again on the same state directory (a new address)."""
        self.proc.kill()
        self.proc.wait()
        self.log.close()
        self._serve()

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

def free_port():
    """A TCP port free on 127.0.0.1 now (a coordinator restarted on the same --listen address)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port

def job_spec(pb, golden, radius=4, **kw):
    """A JobSpec of options by name, as `melbo submit` sends it: each keyword is an option
    (max_new_tokens=2 is --max-new-tokens 2; True is a flag, False its --no- form). radius=None
    leaves --radius out (adapters: adapter_rank=4)."""
    opts = [("model", os.path.abspath(os.path.join(golden, "models", "llama3"))),
            ("prompt-ids", "492,403,287,109,129,38,286"),
            ("source-layer", "1"), ("target-layer", "4")]
    if radius is not None:
        opts.append(("radius", str(radius)))
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

def write_safetensors(path, tensors, metadata):
    """Writes a safetensors file: tensors maps a name to (dtype "F32" or "I32", shape, flat list
    of values); metadata is a dict of strings. Standard library only."""
    header, blobs, off = {}, [], 0
    for name, (dtype, shape, values) in tensors.items():
        blob = struct.pack("<%d%s" % (len(values), "f" if dtype == "F32" else "i"), *values)
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

def read_safetensors_header(path):
    """The JSON header of a safetensors file: tensor entries and "__metadata__"."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))
