"""hybridize: convert Hugging Face softmax-attention models into hybrid linear/full-attention stacks.

    import hybridize
    plan = hybridize.plan("smollm2-135m", ratio="3:1")
    report = hybridize.convert("smollm2-135m", plan, output="out/smol-3to1")
    model, tokenizer = hybridize.load(report.output)
"""
__version__ = "0.1.0"

_API = ("plan", "convert", "load", "load_teacher", "hybrid_plan", "base_shapes")


def __getattr__(name: str):
    # The API pulls in transformers; importing it lazily keeps `import hybridize.modeling` light.
    if name in _API:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'hybridize' has no attribute {name!r}")


__all__ = list(_API)
