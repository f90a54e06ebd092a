"""White-box assurance: what only open weights allow (``wardgate whitebox …``).

Weight diffs (:mod:`.diff`) need only numpy and the GGUF/safetensors readers. Everything that
trains, runs or edits a model needs the ``whitebox`` extra (torch, transformers, peft) and
imports it inside the function that uses it: nothing here is imported on the serving path.
"""
