"""GEM model and trainer (mission stage 8).

Reserved package: the instruction set this project writes is in GEM's own JSON format, so GEM's released
trainer reads it today. The bundled, nanoGPT-style trainer is a later issue; nothing here is importable
yet on purpose (no placeholder code).
"""
