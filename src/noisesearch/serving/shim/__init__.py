"""The serving shim that `noisesearch verifier install` copies into a verifier's environment (with
verifier_protocol.py and the adapters beside it); it never imports noisesearch."""
