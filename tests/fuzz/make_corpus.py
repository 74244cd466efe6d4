#!/usr/bin/env python3
"""tests/fuzz/make_corpus.py - writes the seed corpora of tests/fuzz/corpus/<target>/ (run by
hand; the output is committed, so the fuzz tests need nothing but the repository).

  python3 tests/fuzz/make_corpus.py REPO BUILD

REPO is the source tree, BUILD a configured build (its tests/tokenizer/fixtures holds the
unpacked tokenizer fixtures). Uses Debian's protoc and python3-protobuf for the request seeds
(/usr/bin/python3). Seeds are small on purpose: libFuzzer mutates them thousands of times a
second, so a 7 MB tokenizer.json would waste the few seconds CI gives each target."""
import json, os, shutil, struct, subprocess, sys, tempfile

repo, build = sys.argv[1], sys.argv[2]
out = os.path.join(repo, "tests/fuzz/corpus")


def put(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


def safetensors(header, data, pad_to=8, extra_pad=0):
    """A safetensors file; the header is padded with spaces to pad_to, then extra_pad more."""
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-(8 + len(h))) % pad_to + extra_pad)
    return struct.pack("<Q", len(h)) + h + data


def reheader(path, extra_pad):
    """The file at path re-written with its header JSON followed by extra_pad spaces (no other
    padding), so the data starts wherever that puts it."""
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return safetensors(h, b[8 + n:], pad_to=1, extra_pad=extra_pad)


# ---- frame: streams of frames, split and whole ----------------------------------------------
for f in os.listdir(os.path.join(out, "frame")) if os.path.isdir(os.path.join(out, "frame")) else []:
    os.remove(os.path.join(out, "frame", f))
put("frame", "two_frames", b"\x07\x40" + frame(b"hello") + frame(b""))
put("frame", "oversize", b"\x01\x01" + struct.pack(">I", 5000) + b"x" * 20)
put("frame", "partial", b"\x33\xff" + frame(b"a" * 300) + struct.pack(">I", 40) + b"b" * 10)
put("frame", "many", b"\x99\x10" + b"".join(frame(bytes([i]) * i) for i in range(40)))

# ---- request: Envelopes as a client sends them, and coord.conf text -------------------------
tmp = tempfile.mkdtemp()
subprocess.run(["protoc", f"--python_out={tmp}", f"-I{repo}", f"{repo}/proto/melbo.proto"], check=True)
sys.path.insert(0, tmp)
from proto import melbo_pb2 as pb  # noqa: E402


def env(**kw):
    e = pb.Envelope(id=kw.pop("id", 1), **kw)
    return frame(e.SerializeToString())


def spec(opts):
    return pb.JobSpec(options=[pb.Option(name=k, value=v) for k, v in opts])


hello = env(id=1, hello=pb.Hello(protocol_version=1, token="t0ken", client="melbo 0.1.0"))
put("request", "hello_submit", hello + env(id=2, submit=pb.SubmitRequest(spec=spec([
    ("model", "tiny-llama3"), ("prompts-jsonl", '{"text": "Tell me a story."}\n{"text": "Hi"}\n'),
    ("source-layer", "1"), ("target-layer", "4"), ("vectors", "4"), ("steps", "20"),
    ("radius", "2.5"), ("chat-format", "llama3"), ("system", "Be brief.")]))))
put("request", "submit_upload", env(id=3, submit=pb.SubmitRequest(spec=spec([
    ("model", "qwen3"), ("init", "upload:init"), ("prompt", "Hello there"), ("tp", "2"), ("dp", "2"),
    ("source-layer", "1"), ("target-layer", "3"), ("adapter-rank", "4"), ("wave", "2"), ("seed", "7"),
    ("partition", "gpu"), ("time", "1:00:00")]))))
legacy = pb.JobSpec(model="tiny-llama3", text_prompts=[pb.TextPrompt(text="hi")], source_layer=1,
                    target_layer=4, radius=3.0) if hasattr(pb, "TextPrompt") else spec([("model", "m")])
put("request", "submit_legacy", env(id=4, submit=pb.SubmitRequest(spec=legacy)))
put("request", "reads", env(id=5, list_jobs=pb.ListJobsRequest()) + env(id=6, watch=pb.WatchRequest(
    job_id=1, from_event=3, follow=True)) + env(id=7, fetch=pb.FetchRequest()) +
    env(id=8, cancel=pb.CancelRequest(job_id=2)) + env(id=9, list_banks=pb.ListBanksRequest()))
put("request", "conf", "# coord.conf\nlisten=127.0.0.1:7070\nlimits.max_dp = 8\nlimits.max_tp=4\n"
    "limits.connections=10 # few\nslurm.partition=gpu\n")
shutil.rmtree(tmp)

# ---- safetensors, bank: small real files, the same with the data misaligned, edge cases -----
data = os.path.join(repo, "tests/golden/data")
small = ["steer_llama3.bank.safetensors", "steer_qwen3_adapter.bank.safetensors",
         "train_p2q1.init.safetensors"]
for f in small:
    b = open(os.path.join(data, f), "rb").read()
    put("safetensors", f, b)
    put("safetensors", f.replace(".safetensors", ".pad1.safetensors"), reheader(os.path.join(data, f), 1))
    if "bank" in f:
        put("bank", f, b)
        put("bank", f.replace(".safetensors", ".pad1.safetensors"), reheader(os.path.join(data, f), 1))
put("safetensors", "dtypes.safetensors", safetensors({
    "__metadata__": {"format": "pt"},
    "a": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]},
    "b": {"dtype": "F16", "shape": [3], "data_offsets": [12, 18]},
    "c": {"dtype": "I64", "shape": [], "data_offsets": [18, 26]},
    "d": {"dtype": "U8", "shape": [0, 4], "data_offsets": [26, 26]}}, bytes(range(26))))
put("safetensors", "empty.safetensors", safetensors({}, b""))

# ---- gguf: the reader's own test files --------------------------------------------------------
for f in sorted(os.listdir(os.path.join(repo, "tests/golden/gguf"))):
    if f.endswith(".gguf") and f != "quant.expected.gguf":
        put("gguf", f, open(os.path.join(repo, "tests/golden/gguf", f), "rb").read())

# ---- tokenizer: the fixtures cut down to a few hundred tokens -----------------------------------
fix = os.path.join(build, "tests/tokenizer/fixtures")
SEP_CFG, SEP_TEXT = "\n@@config@@\n", "\n@@text@@\n"


def small_tokenizer(name, keep=320):
    t = json.load(open(os.path.join(fix, name, "tokenizer.json")))
    m = t["model"]
    vocab = {k: v for k, v in m["vocab"].items() if v < keep}
    merges = []
    for mg in m["merges"]:
        a, b = mg.split(" ", 1) if isinstance(mg, str) else mg
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(mg)
        if len(merges) >= 60:
            break
    m["vocab"], m["merges"] = vocab, merges
    added = [a for a in t["added_tokens"]][:12]
    for i, a in enumerate(added):
        a["id"] = a["id"] if a["id"] < keep else keep + i
    t["added_tokens"] = added
    return t


for name in ["qwen3", "llama3.1", "mistral"]:
    t = small_tokenizer(name)
    cfg = json.load(open(os.path.join(fix, name, "tokenizer_config.json")))
    cfg.pop("added_tokens_decoder", None)
    tj = json.dumps(t, ensure_ascii=False)
    put("tokenizer", name, tj + SEP_CFG + json.dumps(cfg, ensure_ascii=False) + SEP_TEXT +
        "Hello, world! Ünïcödé 日本語 <|im_start|> 123456 \t\n  x")
    put("tokenizer", name + "_alone", tj)

# ---- chat: tokenizer_config.json (the template) and messages, one "role\tcontent" a line ------
SEP_MSG = "\n@@messages@@\n"
msgs = "system\tYou are terse.\nuser\tHi!\nassistant\tHello.\nuser\tWhat is 2+2?"
for name in ["qwen3", "llama3.1", "mistral"]:
    cfg = json.load(open(os.path.join(fix, name, "tokenizer_config.json")))
    keep = {k: cfg[k] for k in ("bos_token", "eos_token", "chat_template", "add_bos_token") if k in cfg}
    put("chat", name, json.dumps(keep, ensure_ascii=False) + SEP_MSG + (msgs if name != "mistral" else
        msgs.split("\n", 1)[1]))
put("chat", "chatml", json.dumps({"eos_token": "<|im_end|>", "chat_template":
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% endif %}"}) + SEP_MSG + "user\tone\nassistant\ttwo\nuser\tthree")
put("chat", "raw", "{}" + SEP_MSG + "user\tjust text")

# ---- vexpr ------------------------------------------------------------------------------------
for i, e in enumerate(["9", "-10*22", "0-1", "0.5*3+0.5*4", "random", "none", "r1 - 2*r0", " 1e3*2",
                       "--3", "4+-2*1 - none", "1*", "r", "nonex"]):
    put("vexpr", f"e{i}", e)
print("tests/fuzz/make_corpus.py: wrote", out)
