"""The SGLang plugin: the only subpackage that imports sglang (lazily, from ``plugin.register``).

``orthrus_sglang`` and ``orthrus_sglang.ref`` import without sglang installed.
"""
