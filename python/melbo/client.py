"""melbo/client.py - a client of melbo-coord for notebooks: submit, watch, fetch, list banks.

    c = melbo.Client("127.0.0.1:7878", token)       # or MELBO_COORD / MELBO_TOKEN / the config
    job = c.submit(model="/models/llama3", prompt="How can I make a bomb?", source_layer=7,
                   target_layer=20, radius=4, vectors=32, steps=300)
    for ev in c.watch(job):                          # events until DONE, FAILED or CANCELLED
        if ev.kind == "STEP": print(ev.step.step, max(ev.step.objective))
    path = c.fetch(job, "bomb.bank.safetensors")     # chunks, sha256-checked, written atomically
    bank = melbo.Bank(path)
    c.banks(model="llama3"); c.bank(bank_id)        # the catalog
    c.label(bank_id, 9, "refuses innocuous requests"); c.search("refuses"); c.near(bank_id, 9)

The protocol is DESIGN §4's: every message one Envelope (proto/melbo.proto, read by
melbo/_proto.py with PyPI protobuf), framed by a 4-byte big-endian length; frames over 16 MiB
are refused. Every refusal raises ClientError with the coordinator's code (the ErrorCode name,
"ERROR_INVALID", ...) and message; a coordinator that cannot be reached raises ClientError with
code "UNREACHABLE". Replies are plain Python objects (Record: a dict whose keys also read as
attributes; enums by name, as the CLI prints them).

TLS: with a fingerprint (Client(fingerprint="sha256:..."), else MELBO_COORD_FINGERPRINT, else the
config file's MELBO_COORD_FINGERPRINT line: the third line `melbo-coord init` prints) the
connection is TLS 1.3 and the coordinator's certificate must hash (sha256 of its DER) to it:
pinning, no CA. A different certificate raises ClientError("UNREACHABLE", ...) naming both.
Without one the client speaks plaintext (a coordinator with plaintext_loopback=1).
"""

import hashlib
import os
import secrets
import socket
import ssl
import stat
import struct
import time

MAX_FRAME = 16 * 1024 * 1024
PROTOCOL_VERSION = 1
# As `melbo submit` (cli/submit.c): a --prompts file is sent as its text, at most PROMPTS_CAP
# bytes; the files of UPLOADED options are uploaded in chunks before the submit names them.
PROMPTS_CAP = 15 * 1024 * 1024
UPLOADED = ("init", "calibration-init")
UPLOAD_CHUNK = 1 << 20
TERMINAL_STATES = ("DONE", "FAILED", "CANCELLED")


class ClientError(Exception):
    """A refusal by the coordinator (code: its ErrorCode name, e.g. "ERROR_NOT_FOUND"), or
    "UNREACHABLE" when there is no coordinator to talk to."""

    def __init__(self, code, message):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message


class Record(dict):
    """A reply as a dict whose keys also read as attributes (None when absent)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self.get(name)


def to_python(msg):
    """A protobuf message as Records, lists, numbers and strings: only the fields that are set,
    enums by their names."""
    out = Record()
    for field, value in msg.ListFields():
        if _repeated(field):
            out[field.name] = [_value(field, v) for v in value]
        else:
            out[field.name] = _value(field, value)
    return out


def _repeated(field):
    rep = getattr(field, "is_repeated", None)  # protobuf >= 6 (label is gone in 7)
    return rep if isinstance(rep, bool) else field.label == field.LABEL_REPEATED


def _value(field, v):
    if field.type == field.TYPE_MESSAGE:
        return to_python(v)
    if field.type == field.TYPE_ENUM:
        ev = field.enum_type.values_by_number.get(v)
        return ev.name if ev is not None else v
    return v


def _config():
    """MELBO_COORD and MELBO_TOKEN from $XDG_CONFIG_HOME/melbo/config (else
    ~/.config/melbo/config), as the melbo CLI reads them."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    home = os.environ.get("HOME")
    path = (os.path.join(xdg, "melbo", "config") if xdg else
            os.path.join(home, ".config", "melbo", "config") if home else None)
    found = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("#") or "=" not in line:
                    continue
                k, v = line.split("=", 1)
                k, v = k.strip(), v.strip()
                key = {"coord": "MELBO_COORD", "token": "MELBO_TOKEN"}.get(k, k)
                if key in ("MELBO_COORD", "MELBO_TOKEN") and key not in found:
                    found[key] = v
    except (OSError, TypeError):
        pass
    return found


def spec_options(options=None, **kw):
    """The (name, value) pairs of a job, as `melbo submit` sends them (JobSpec.options): first
    options (pairs, in order), then each keyword: underscores become dashes; True is a flag,
    False its --no- form, None is left out; a list of numbers is one comma-separated value
    (prompt_ids=[1, 2, 3], betas=(0.9, 0.98)); any other list repeats the option (prompt=["a",
    "b"], prompt_ids=[[1, 2], [3, 4]])."""
    out = []
    for name, value in (options or []):
        out.append((str(name).lstrip("-"), None if value is None else str(value)))
    for key, v in kw.items():
        name = key.replace("_", "-")
        values = v if isinstance(v, (list, tuple)) and not _numbers(v) else [v]
        for x in values:
            if x is True:
                out.append((name, None))
            elif x is False:
                out.append(("no-" + name, None))
            elif x is None:
                continue
            elif isinstance(x, (list, tuple)):
                out.append((name, ",".join(_num(y) for y in x)))
            else:
                out.append((name, _num(x)))
    return out


def _read_capped(path, cap, what):
    """The text of the regular file at path, at most cap bytes (a FIFO or a device is refused
    without blocking), read with the caller's own rights: the coordinator opens no user file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise ClientError("ERROR_INVALID", "%s %s: %s" % (what, path, e.strerror)) from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ClientError("ERROR_INVALID", "%s %s: not a regular file" % (what, path))
        data = f.read(cap + 1)
    if len(data) > cap:
        raise ClientError("ERROR_TOO_LARGE", "%s %s: larger than %d bytes" % (what, path, cap))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ClientError("ERROR_INVALID", "%s %s: not UTF-8 (byte %d)" % (what, path, e.start)) \
            from None


def _numbers(v):
    return len(v) > 0 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)


def _num(x):
    return repr(x) if isinstance(x, float) else str(x)


def _tls(sock, address, fingerprint):
    """TLS 1.3 over sock; the certificate's sha256 must be fingerprint ("sha256:HEX")."""
    want = fingerprint.lower()
    want = want[7:] if want.startswith("sha256:") else want
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # pinned below instead
    try:
        s = ctx.wrap_socket(sock)
    except (OSError, ssl.SSLError) as e:
        sock.close()
        raise ClientError("UNREACHABLE",
                          "TLS handshake with %s failed: %s" % (address, e)) from None
    got = hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()
    if got != want:
        s.close()
        raise ClientError("UNREACHABLE", "the coordinator at %s presented certificate "
                          "sha256:%s..., not the pinned fingerprint sha256:%s...; refusing to "
                          "talk to it"
                          % (address, got[:16], want[:16]))
    return s


class _Conn:
    """One authenticated connection: framed Envelopes, request ids."""

    def __init__(self, pb, address, token, timeout, client_name, fingerprint=None):
        self.pb = pb
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            raise ClientError("UNREACHABLE", "coordinator address '%s' is not HOST:PORT" % address)
        try:
            self.sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
        except OSError as e:
            raise ClientError("UNREACHABLE", "cannot connect to %s: %s" % (address, e)) from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if fingerprint:
            self.sock = _tls(self.sock, address, fingerprint)
        self.buf = bytearray()
        self.next_id = 0
        self.address = address
        try:
            rep = self.call(hello=pb.Hello(protocol_version=PROTOCOL_VERSION, token=token or "",
                                           client=client_name))
        except ClientError:
            self.close()
            raise
        if rep.WhichOneof("body") != "hello_ok":
            self.close()
            raise ClientError("ERROR_PROTOCOL", "unexpected reply to Hello: %s"
                              % rep.WhichOneof("body"))
        self.hello = rep.hello_ok

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def send(self, env):
        data = env.SerializeToString()
        if len(data) > MAX_FRAME:
            raise ClientError("ERROR_TOO_LARGE", "request of %d bytes (frames are at most 16 MiB)"
                              % len(data))
        try:
            self.sock.sendall(struct.pack(">I", len(data)) + data)
        except OSError as e:
            raise ClientError("UNREACHABLE", "lost the coordinator at %s: %s" % (self.address, e))

    def recv(self, timeout=None):
        """The next Envelope; timeout None: the connection's; < 0: wait forever."""
        if timeout is not None:
            self.sock.settimeout(None if timeout < 0 else timeout)
        try:
            while True:
                if len(self.buf) >= 4:
                    n = struct.unpack(">I", self.buf[:4])[0]
                    if n > MAX_FRAME:
                        raise ClientError("ERROR_TOO_LARGE", "the coordinator sent a frame of %d "
                                          "bytes" % n)
                    if len(self.buf) >= 4 + n:
                        env = self.pb.Envelope()
                        env.ParseFromString(bytes(self.buf[4:4 + n]))
                        del self.buf[:4 + n]
                        return env
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    raise ClientError("UNREACHABLE", "the coordinator at %s closed the connection"
                                      % self.address)
                self.buf += chunk
        except socket.timeout:
            raise ClientError("UNREACHABLE", "no answer from the coordinator at %s" % self.address)
        except OSError as e:
            raise ClientError("UNREACHABLE", "lost the coordinator at %s: %s" % (self.address, e))

    def request(self, **body):
        self.next_id += 1
        self.send(self.pb.Envelope(id=self.next_id, **body))
        return self.next_id

    def reply(self, rid, timeout=None):
        """The next reply to request rid (an Error reply raises ClientError)."""
        while True:
            rep = self.recv(timeout)
            if rep.WhichOneof("body") == "error" and rep.id in (rid, 0):
                raise ClientError(self.pb.ErrorCode.Name(rep.error.code)
                                  if rep.error.code in self.pb.ErrorCode.values() else
                                  str(rep.error.code), rep.error.message)
            if rep.id == rid:
                return rep

    def call(self, **body):
        return self.reply(self.request(**body))


class Client:
    """A connection to melbo-coord. address "HOST:PORT" and token default to MELBO_COORD and
    MELBO_TOKEN, then ~/.config/melbo/config (the lines `melbo-coord init` prints)."""

    def __init__(self, address=None, token=None, timeout=30.0, fingerprint=None):
        from melbo import _proto, __version__
        self.pb = _proto.messages()
        cfg = _config()
        if address is None:
            address = os.environ.get("MELBO_COORD") or cfg.get("MELBO_COORD")
        if token is None:
            token = os.environ.get("MELBO_TOKEN") or cfg.get("MELBO_TOKEN")
        if not address:
            raise ClientError("UNREACHABLE", "no coordinator: give Client(address), set "
                              "MELBO_COORD, or write it to ~/.config/melbo/config")
        if fingerprint is None:
            fingerprint = (os.environ.get("MELBO_COORD_FINGERPRINT")
                           or cfg.get("MELBO_COORD_FINGERPRINT"))
        self.address, self.token, self.timeout = address, token, timeout
        self.fingerprint = fingerprint
        self.client_name = "melbo-python " + __version__
        self._conn = _Conn(self.pb, address, token, timeout, self.client_name, fingerprint)
        self.user = self._conn.hello.user
        self.server_version = self._conn.hello.server_version

    def close(self):
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _call(self, **body):
        return self._conn.call(**body)

    # ------------------------------------------------------------------------- jobs

    def submit(self, options=None, request_id=None, **kw):
        """Submits a job; returns its id. Options by name as on `melbo submit`'s command line
        (see spec_options): submit(model=..., prompt="...", source_layer=7, target_layer=20,
        radius=4, vectors=32, steps=300, no_orthogonal=True, adapter_rank=4, ...). The
        coordinator checks them with melbo's option table and refuses a job the ranks would
        refuse (ClientError "ERROR_INVALID" with the ranks' message). request_id (16-64 of
        [0-9a-zA-Z_-], default a random one, kept in self.last_request_id): a submit that lost
        its reply, sent again with the same request_id, returns the job it made, never a
        second one."""
        self.last_request_id = request_id or secrets.token_hex(12)
        spec = self.pb.JobSpec()
        uploads = []
        for name, value in spec_options(options, **kw):
            if value is not None and name == "prompts":
                name, value = "prompts-jsonl", _read_capped(value, PROMPTS_CAP, "--prompts")
            elif value is not None and name in UPLOADED:
                uploads.append((name, value))
                value = "upload:" + name
            elif value is not None and name == "model" and "/" in value:
                value = os.path.abspath(value)
            o = spec.options.add(name=name)
            if value is not None:
                o.value = value
        for name, path in uploads:  # before the submit, which names them "upload:NAME"
            self._upload(name, path)
        return int(self._call(submit=self.pb.SubmitRequest(
            spec=spec, request_id=self.last_request_id)).submitted.job_id)

    def _upload(self, name, path):
        """Uploads the regular file at path for option name (InputUpload chunks of at most
        UPLOAD_CHUNK bytes, each acknowledged; the last carries the whole file's sha256)."""
        try:
            f = open(path, "rb", buffering=0)
        except OSError as e:
            raise ClientError("ERROR_INVALID", "--%s %s: %s" % (name, path, e.strerror)) from None
        with f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ClientError("ERROR_INVALID", "--%s %s: not a regular file" % (name, path))
            total, off, sha = st.st_size, 0, hashlib.sha256()
            while True:
                chunk = f.read(min(UPLOAD_CHUNK, total - off))
                if len(chunk) < min(UPLOAD_CHUNK, total - off):
                    raise ClientError("ERROR_INVALID", "--%s %s: cannot read it (did it shrink?)"
                                      % (name, path))
                sha.update(chunk)
                last = off + len(chunk) >= total
                u = self.pb.InputUpload(option=name, offset=off, data=chunk, total_size=total,
                                        last=last)
                if last:
                    u.sha256 = sha.hexdigest()
                rep = self._call(input_upload=u)
                if rep.WhichOneof("body") != "input_upload_ack":
                    raise ClientError("ERROR_PROTOCOL", "unexpected reply to an upload: %s"
                                      % rep.WhichOneof("body"))
                off += len(chunk)
                if last:
                    return

    def watch(self, job, from_event=1, follow=True, retries=30):
        """Yields the job's events (Records: number, kind "STATE" | "STEP" | "GENERATE" |
        "CHECKPOINT" | "LOG" | "BANK", state "RUNNING" ..., step {...}, ...) from event number
        from_event, until the job is DONE, FAILED or CANCELLED (follow=False: until the events
        stored so far). On its own connection; if that drops, or the coordinator says this
        watcher fell behind, it reconnects and resumes after the last event it yielded (up to
        retries times in a row, a second apart), as `melbo watch` does."""
        nxt, tries, connected = int(from_event), 0, False
        while True:
            conn = None
            try:
                conn = _Conn(self.pb, self.address, self.token, self.timeout, self.client_name,
                             self.fingerprint)
                connected = True
                rid = conn.request(watch=self.pb.WatchRequest(job_id=int(job), from_event=nxt,
                                                              follow=follow))
                while True:
                    env = conn.recv(-1)
                    body = env.WhichOneof("body")
                    if body == "error":
                        code = self.pb.ErrorCode.Name(env.error.code)
                        if code == "ERROR_SLOW_CONSUMER":
                            break
                        raise ClientError(code, env.error.message)
                    if body == "event" and env.event.job_id == int(job) and env.event.number == nxt:
                        nxt += 1
                        tries = 0
                        yield to_python(env.event)
                    elif body == "watch_end" and env.id == rid:
                        return
            except ClientError as e:
                # only a connection lost after it worked is worth waiting for (a restart)
                if e.code != "UNREACHABLE" or not connected or tries >= retries:
                    raise
            finally:
                if conn is not None:
                    conn.close()
            tries += 1
            time.sleep(1.0)

    def wait(self, job):
        """Follows the job to its end; returns its last event (ev.state "DONE", "FAILED" with
        ev.error, or "CANCELLED")."""
        last = None
        for ev in self.watch(job):
            last = ev
        return last

    def jobs(self, limit=None, user=None):
        """The job table (JobSummary Records), newest first as the coordinator lists them."""
        q = self.pb.ListJobsRequest()
        if limit is not None:
            q.limit = int(limit)
        if user is not None:
            q.user = user
        return [to_python(j) for j in self._call(list_jobs=q).jobs.jobs]

    def job(self, job):
        """One job: {job, spec, vectors | adapters, last_step, bank} (ShowJobReply)."""
        return to_python(self._call(show_job=self.pb.ShowJobRequest(job_id=int(job))).job)

    def cancel(self, job):
        """Cancels a job; returns its state after the request."""
        rep = self._call(cancel=self.pb.CancelRequest(job_id=int(job))).cancelled
        return self.pb.JobState.Name(rep.state)

    # ------------------------------------------------------------------------- banks

    def fetch(self, job=None, out=None, bank_id=None):
        """Downloads the bank of a job (or bank_id) to out (default BANK_ID.bank.safetensors):
        chunks in order, the size and sha256 checked, written to a temporary file next to out
        and renamed when complete. Returns out."""
        if (job is None) == (bank_id is None):
            raise ValueError("fetch: give a job id or bank_id=, not both")
        q = self.pb.FetchRequest()
        if job is not None:
            q.job_id = int(job)
        else:
            q.bank_id = bank_id
        rid = self._conn.request(fetch=q)
        rep = self._conn.reply(rid)
        first = rep.bank_chunk
        if out is None:
            out = "%s.bank.safetensors" % first.bank_id
        out = os.fspath(out)
        tmp = "%s.part%d" % (out, os.getpid())
        h, got, ok = hashlib.sha256(), 0, False
        try:
            with open(tmp, "wb") as f:
                while True:
                    if rep.WhichOneof("body") != "bank_chunk":
                        raise ClientError("ERROR_PROTOCOL", "unexpected %s during a fetch"
                                          % rep.WhichOneof("body"))
                    bc = rep.bank_chunk
                    if bc.offset != got:
                        raise ClientError("ERROR_PROTOCOL", "bank transfer broken at byte %d "
                                          "(chunk at %d)" % (got, bc.offset))
                    f.write(bc.data)
                    h.update(bc.data)
                    got += len(bc.data)
                    if bc.last:
                        if bc.sha256 != h.hexdigest():
                            raise ClientError("ERROR_PROTOCOL", "bank checksum mismatch (got %s, "
                                              "the coordinator says %s)"
                                              % (h.hexdigest(), bc.sha256))
                        if bc.HasField("total_size") and bc.total_size != got:
                            raise ClientError("ERROR_PROTOCOL", "bank of %d bytes, the coordinator "
                                              "says %d" % (got, bc.total_size))
                        break
                    rep = self._conn.reply(rid)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, out)
            ok = True
        finally:
            if not ok and os.path.exists(tmp):
                os.remove(tmp)
        return out

    def banks(self, model=None, fingerprint=None, user=None, prompt=None, limit=None):
        """The bank catalog (BankInfo Records), filtered as `melbo bank ls` filters it: model and
        prompt are substrings."""
        q = self.pb.ListBanksRequest()
        for k, v in (("model", model), ("fingerprint", fingerprint), ("user", user),
                     ("prompt", prompt)):
            if v is not None:
                setattr(q, k, v)
        if limit is not None:
            q.limit = int(limit)
        return [to_python(b) for b in self._call(list_banks=q).banks.banks]

    def bank(self, bank_id):
        """One bank's catalog entry with its rows (BankInfo: vectors, kind, prompts, rows ...)."""
        return to_python(self._call(show_bank=self.pb.ShowBankRequest(bank_id=bank_id)).bank)

    # ------------------------------------------------------------------------- the lab catalog

    def label(self, bank, vector, label=None, note=None, clear=False):
        """Sets the label (and note) of vector `vector` of bank `bank`, as `melbo bank label`:
        None keeps what is there, note="" removes the note, clear=True removes both, and
        label(bank, vector) alone only reads them. Returns the row as stored (LabelReply:
        bank_id, vector, label, note, user, time)."""
        q = self.pb.LabelRequest(bank_id=bank, vector=int(vector))
        if label is not None:
            q.label = label
        if note is not None:
            q.note = note
        if clear:
            q.clear = True
        return to_python(self._call(label=q).labelled)

    def search(self, text, limit=None):
        """Full-text search over labels, notes, prompts and completions (SQLite FTS5 syntax;
        plain words always work). A list of SearchHit Records, best first: bank_id, vector (-1:
        the bank's prompts), field, snippet, model, label."""
        q = self.pb.SearchRequest(text=text)
        if limit is not None:
            q.limit = int(limit)
        return [to_python(h) for h in self._call(search=q).search_results.hits]

    def near(self, bank, vector, top=10, model=None):
        """The lab's vectors nearest to vector `vector` of bank `bank` by cosine, within its model
        fingerprint and source layer (model naming another model raises ClientError). A list of
        NearHit Records, highest cosine first: bank_id, vector, cosine, label, completion,
        job_id."""
        q = self.pb.NearRequest(bank_id=bank, vector=int(vector), top=int(top))
        if model is not None:
            q.model = model
        return [to_python(h) for h in self._call(near=q).near_results.hits]
