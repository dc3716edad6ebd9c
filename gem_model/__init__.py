"""GEM (Lan et al., NeurIPS 2025) in our own code: the model, its data, its training and greedy inference.

- ``config``: dataclasses and the presets ``tiny`` / ``smol`` / ``gem7b``;
- ``model``: the graph (ECG encoder, CLIP, projectors, the splice at ``<image>``, any HF causal LM);
- ``checkpoints``: our checkpoints, GEM-7B / LLaVA-1.6 / PULSE key maps, ECG-CoCa, merged LoRA;
- ``conversation``: templates and label masking built piece by piece;
- ``data``: instruction items -> ids, labels, ECG and image tensors; bad items skipped with reasons;
- ``train``: the loop on accelerate; ``interpret``: greedy generation to JSONL; ``cli``: the subcommands;
- ``evaluate``: ``ecg-grounding evaluate`` (``eval_inputs`` predictions and references, ``scores`` judge-free,
  ``detection`` ECG-Bench classes, ``judge`` GEM's judge fixed, ``eval_report`` and ``published``: the report).

Importing the package imports no torch: the pipeline's CLI stays light. ``gem_model`` uses only the
canonical reader and record conventions of ``pipeline`` (``pipeline.sources.wfdb_common``, ``pipeline.record``).
"""
