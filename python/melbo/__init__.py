"""melbo - banks of MELBO steering vectors and adapters from Python (DESIGN §5 python/).

    import melbo
    bank = melbo.Bank("bomb.bank.safetensors")        # numpy + safetensors
    v = bank.vector("-2.5*1+0.5*r0")                   # melbo-rank gen --vector's arithmetic
    with bank.steer(model, "3"): model.generate(...)   # torch + transformers, imported then
    c = melbo.Client("127.0.0.1:7878", token)          # PyPI protobuf, imported then

See python/README.md.
"""

__version__ = "0.1.0"

from melbo.bank import FORMAT_VERSION, Bank, BankError  # noqa: E402
from melbo.vexpr import VectorExpressionError  # noqa: E402


def __getattr__(name):
    # The service client needs PyPI protobuf; import it only when asked for.
    if name in ("Client", "ClientError", "Record"):
        from melbo import client
        return getattr(client, name)
    raise AttributeError("module 'melbo' has no attribute %r" % name)


__all__ = ["Bank", "BankError", "Client", "ClientError", "FORMAT_VERSION", "Record",
           "VectorExpressionError", "__version__"]
