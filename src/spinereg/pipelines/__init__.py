"""Whole jobs: check the inputs, run a registration, write every output and the QC report as one
transaction (the layer between the library's parts and the command line)."""
