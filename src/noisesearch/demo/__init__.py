"""The local web demo (`noisesearch demo`): search on the embedded models from a browser."""
