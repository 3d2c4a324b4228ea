"""``orthrus train``: teach a checkpoint's diffusion view to draft what its AR view will accept.

Modules, one concept each: prompt_set/prompts (what to ask), distill (the base model's own
answers), data (documents -> packed rows), blocks (anchors, block inputs, who attends to whom),
attention (dense SDPA or flex_attention), forward (teacher and draft passes), objective (loss,
draft accuracy), view (which weights train), checkpointing (resume, final checkpoint), loop
(the run), evaluate (held-out tau), delta (the compact trained-view artefact), plot.
Nothing here is imported by ``orthrus_sglang`` itself.
"""
