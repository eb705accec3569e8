"""The verifier service (HTTP) and isolated verifier environments: rewards served from processes of their own."""
