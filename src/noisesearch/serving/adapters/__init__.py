"""Adapters of the verifiers served from isolated environments, one module per verifier.

The serving shim copies these files into a verifier's environment and imports one of them there, so an adapter
imports only the standard library, torch, PIL and its verifier's own packages (lazily, in `load`), never
noisesearch. Each module names `PACKAGE` (the distribution whose version the service reports), `IMPORTS` (the
modules an install must be able to import), `WEIGHTS` (each local weight path `load` needs, and what it is) and
`load(weights, device) -> score`, where `score(images (N, C, H, W) in [-1, 1], prompts) -> (N,) scores`.
"""
